// Live Operator Chat, chat window: the composer. What the visitor writes is shown at once as
// a pending message and sent in order, one at a time (the first creates the conversation),
// retried with the same clientMsgID through transient trouble; the optional name, email and
// phone are remembered.

import { backoff, randomId, sleep } from "./api.js";
import { el } from "./dom.js";
import { storage } from "./storage.js";

const SEND_MAX_RETRIES = 6; // transient failures retried (same clientMsgID) before "Not sent"
const CLOSED_TEXT = "This chat is closed.";

/** Wires the composer in ``ui``; ``conversation`` adopts the conversation a first send made
 * and forgets one the server no longer knows; ``context()`` is where the visitor is now.
 * Returns what the window's start needs. */
export function createComposer({ ui, state, view, transport, conversation, visitorKey, context }) {
  const { buildMessage, hideBanner, isNearBottom, receive, refresh, regroup } = view;
  const { scrollToBottom, setTime, showBanner } = view;

  // --- sending ------------------------------------------------------------------------------

  function submit() {
    const text = ui.composer.value.trim();
    if (!text) {
      ui.composer.focus();
      return;
    }
    const invalid = [ui.email, ui.phone].find((input) => !input.checkValidity());
    if (invalid) {
      ui.details.open = true;
      invalid.focus();
      invalid.reportValidity();
      return;
    }
    ui.composer.value = "";
    autosize();
    updateSendButton();

    const clientMsgID = randomId();
    const item = buildMessage("visitor", text, "You", Date.now() / 1000);
    item.classList.add("is-sending");
    item.setAttribute("aria-busy", "true");
    item.dataset.clientMsgId = clientMsgID;
    const meta = item.querySelector(".msg__meta");
    meta.replaceChildren(document.createTextNode("Sending…"));
    ui.list.append(item);
    regroup(item);
    const pending = { clientMsgID, text, el: item };
    state.pending.set(clientMsgID, pending);
    if (ui.details.open && state.convoID === null) ui.details.open = false;
    refresh();
    scrollToBottom();
    enqueue(pending);
    ui.composer.focus();
  }

  function enqueue(pending) {
    state.sendQueue = state.sendQueue.then(() => deliver(pending));
  }

  async function deliver(pending) {
    let retries = 0;
    for (;;) {
      if (!state.pending.has(pending.clientMsgID)) return; // a poll already confirmed it
      const fields = {
        message: pending.text,
        clientMsgID: pending.clientMsgID,
        convoID: state.convoID || undefined,
        fname: ui.fname.value.trim() || undefined,
        email: ui.email.value.trim() || undefined,
        phone: ui.phone.value.trim() || undefined,
        ...context(),
      };
      try {
        const data = await transport.send(fields);
        if (state.sendTrouble) {
          state.sendTrouble = false;
          hideBanner();
        }
        if (!state.convoID && data.convoID) conversation.adopt(data.convoID);
        if (data.message) {
          const stick = isNearBottom();
          receive(data.message, pending);
          refresh();
          if (stick) scrollToBottom();
        }
        if (state.pending.has(pending.clientMsgID)) {
          // The socket acks with the seq only; its message:new event (matched by
          // clientMsgID) replaces the optimistic copy, before or after this ack.
          if (Number.isInteger(data.seq)) markAcked(pending);
          else markSent(pending);
        }
        return;
      } catch (err) {
        if (err.code === "visitor_blocked") {
          // No retry can succeed: the conversation is closed to this visitor.
          markFailed(pending, "Not sent.", { retry: false });
          closeChat();
          return;
        }
        if (err.status === 404 && err.code === "conversation_not_found" && fields.convoID) {
          conversation.forget(); // the stored conversation is gone: this message starts anew
          continue;
        }
        if (err.transient && retries < SEND_MAX_RETRIES) {
          retries += 1;
          state.sendTrouble = true;
          showBanner("Reconnecting…");
          await sleep(backoff(retries));
          continue;
        }
        if (state.sendTrouble) {
          state.sendTrouble = false;
          hideBanner();
        }
        markFailed(pending, err.transient ? "Not sent — check your connection." : err.message);
        return;
      }
    }
  }

  function markSent(pending) {
    // Accepted, but the answer carried no message to show: keep the optimistic copy.
    state.pending.delete(pending.clientMsgID);
    pending.el.classList.remove("is-sending");
    pending.el.removeAttribute("aria-busy");
    setTime(pending.el.querySelector(".msg__meta"), Date.now() / 1000);
  }

  function markAcked(pending) {
    // Stored by the server; stays pending until its message:new event claims the element.
    pending.el.classList.remove("is-sending");
    pending.el.removeAttribute("aria-busy");
    setTime(pending.el.querySelector(".msg__meta"), Date.now() / 1000);
  }

  function closeChat() {
    ui.status.textContent = CLOSED_TEXT;
    ui.status.hidden = false;
    ui.composer.disabled = true;
    ui.send.disabled = true;
    ui.composer.placeholder = CLOSED_TEXT;
  }

  function markFailed(pending, reason, { retry: retriable = true } = {}) {
    const item = pending.el;
    item.classList.remove("is-sending");
    item.classList.add("is-failed");
    item.removeAttribute("aria-busy");
    const meta = item.querySelector(".msg__meta");
    const note = el("span", "msg__error");
    note.textContent = reason;
    if (!retriable) {
      meta.replaceChildren(note);
      return;
    }
    const retry = el("button", "msg__retry");
    retry.type = "button";
    retry.textContent = "Retry";
    retry.addEventListener("click", () => {
      item.classList.remove("is-failed");
      item.classList.add("is-sending");
      item.setAttribute("aria-busy", "true");
      meta.replaceChildren(document.createTextNode("Sending…"));
      enqueue(pending);
      ui.composer.focus();
    });
    meta.replaceChildren(note, retry);
  }

  // --- the text box -------------------------------------------------------------------------

  function autosize() {
    ui.composer.style.height = "auto";
    ui.composer.style.height = `${Math.min(ui.composer.scrollHeight, 140)}px`;
  }

  function updateSendButton() {
    ui.send.disabled = ui.composer.disabled || ui.composer.value.trim() === "";
  }

  ui.composer.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter is a newline; an IME composition keeps its own Enter.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      submit();
    }
  });
  ui.composer.addEventListener("input", () => {
    autosize();
    updateSendButton();
    if (ui.composer.value.trim()) transport.typing();
  });
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });

  // --- visitor details ----------------------------------------------------------------------

  try {
    const saved = JSON.parse(storage.get(visitorKey) || "null");
    if (saved && typeof saved === "object") {
      if (typeof saved.fname === "string") ui.fname.value = saved.fname;
      if (typeof saved.email === "string") ui.email.value = saved.email;
      if (typeof saved.phone === "string") ui.phone.value = saved.phone;
    }
  } catch {
    /* ignore a corrupt entry */
  }
  for (const input of [ui.fname, ui.email, ui.phone]) {
    input.addEventListener("change", () => {
      storage.set(
        visitorKey,
        JSON.stringify({
          fname: ui.fname.value.trim(),
          email: ui.email.value.trim(),
          phone: ui.phone.value.trim(),
        }),
      );
    });
  }

  return { updateSendButton };
}
