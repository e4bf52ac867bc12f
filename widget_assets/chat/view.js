// Live Operator Chat, chat window: the conversation on screen. Messages in seq order, each
// shown once (the visitor's optimistic copy becomes the server's), the typing indicator, the
// status line, the banner, and scrolling that follows new messages only when the visitor is
// at the bottom.

import { appendText, displayName, el, formatTime } from "./dom.js";

const NEAR_BOTTOM_PX = 80;
const RESOLVED_TEXT = "This conversation was resolved — write again to reopen it";
const DEFAULT_SUBTITLE = "We’re here to help";

/** The view over ``ui`` (the page's elements by role); ``state`` is the window's, shared with
 * the composer and the conversation lifecycle. */
export function createView(ui, state) {
  function buildMessage(sender, text, name, created, imageURL = null) {
    const item = el("li", `msg msg--${sender}`);
    item.dataset.sender = sender;
    if (sender === "operator" || sender === "bot") {
      item.dataset.name = name;
      const who = el("span", "msg__name");
      who.textContent = name;
      item.append(who);
    } else if (sender === "visitor") {
      const who = el("span", "visually-hidden");
      who.textContent = "You: ";
      item.append(who);
    }
    const bubble = el("div", "msg__bubble");
    const image = imageLink(imageURL, name);
    if (image) {
      bubble.classList.add("msg__bubble--image");
      bubble.append(image);
      if (text) {
        const caption = el("p", "msg__caption");
        appendText(caption, text);
        bubble.append(caption);
      }
    } else {
      appendText(bubble, text);
    }
    item.append(bubble);
    const meta = el("div", "msg__meta");
    setTime(meta, created);
    item.append(meta);
    return item;
  }

  /** A thumbnail that opens the image full size in a new tab; null for no (or no http(s))
   * URL. */
  function imageLink(url, name) {
    let href = null;
    try {
      const parsed = new URL(url || "", window.location.href);
      if (url && (parsed.protocol === "http:" || parsed.protocol === "https:")) href = parsed.href;
    } catch {
      href = null;
    }
    if (!href) return null;
    const link = el("a", "msg__image");
    link.href = href;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.setAttribute("aria-label", "Open the image full size");
    const img = el("img");
    img.src = href;
    img.alt = `Image from ${name}`;
    img.decoding = "async";
    link.append(img);
    return link;
  }

  function setTime(meta, created) {
    const { short, full, iso } = formatTime(created);
    const time = el("time");
    time.textContent = short;
    if (iso) time.dateTime = iso;
    if (full) time.title = full;
    meta.replaceChildren(time);
  }

  /** Inserts ``item`` in seq order: before the first later message, else before any pending. */
  function place(item, seq) {
    let before = null;
    for (const child of ui.list.children) {
      if (child === item) continue;
      const childSeq = child.dataset.seq;
      if (childSeq === undefined || Number(childSeq) > seq) {
        before = child;
        break;
      }
    }
    // Only move when needed: re-inserting a node makes screen readers announce it again.
    if (item.parentNode !== ui.list || item.nextElementSibling !== before) {
      ui.list.insertBefore(item, before);
    }
  }

  /** Shows one server message unless it is already shown; returns the new element or null. */
  function receive(m, pendingHint = null) {
    if (!m || !Number.isInteger(m.seq)) return null;
    const existing = state.bySeq.get(m.seq);
    if (existing) {
      // Already shown: a poll got here first. An optimistic copy it did not claim (no
      // clientMsgID echoed) would be a second copy of the same message.
      if (pendingHint && state.pending.has(pendingHint.clientMsgID) && pendingHint.el !== existing) {
        dropPending(pendingHint);
      }
      return null;
    }
    if (m.sender === "operator" && m.operatorName) state.operatorName = m.operatorName;
    const text = typeof m.message === "string" ? m.message : "";
    const pending = (m.clientMsgID && state.pending.get(m.clientMsgID)) || pendingHint;
    let item;
    if (pending && m.sender === "visitor") {
      // The visitor's own optimistic copy becomes the server's copy: same element.
      state.pending.delete(pending.clientMsgID);
      item = pending.el;
      item.classList.remove("is-sending", "is-failed");
      item.removeAttribute("aria-busy");
      delete item.dataset.clientMsgId;
      item.querySelector(".msg__bubble").replaceChildren();
      appendText(item.querySelector(".msg__bubble"), text);
      setTime(item.querySelector(".msg__meta"), m.created);
      place(item, m.seq);
    } else {
      const name = displayName(m.sender, m.operatorName);
      item = buildMessage(m.sender, text, name, m.created, m.imageURL);
      if (m.sender === "operator" && state.assistantSpoke && !state.humanJoined) {
        // The assistant has handed over: say so where the first human reply begins.
        const joined = el("p", "msg__joined");
        joined.textContent = `${name} has joined the conversation`;
        item.prepend(joined);
      }
      place(item, m.seq);
    }
    if (m.sender === "bot") state.assistantSpoke = true;
    if (m.sender === "operator") state.humanJoined = true;
    item.dataset.seq = String(m.seq);
    if (m.id) item.dataset.id = m.id;
    state.bySeq.set(m.seq, item);
    regroup(item);
    return item;
  }

  function dropPending(pending) {
    state.pending.delete(pending.clientMsgID);
    pending.el.remove();
  }

  /** Consecutive messages by the same author show the name once. */
  function regroup(item) {
    for (const node of [item, item.nextElementSibling]) {
      if (!node) continue;
      const prev = node.previousElementSibling;
      const same =
        prev !== null &&
        prev.dataset.sender === node.dataset.sender &&
        prev.dataset.name === node.dataset.name;
      node.classList.toggle("msg--continued", same);
    }
  }

  // --- indicators ---------------------------------------------------------------------------

  function setTyping(on) {
    if (on) {
      const text = `${state.operatorName || "An operator"} is typing…`;
      if (ui.typingText.textContent !== text) ui.typingText.textContent = text;
      if (ui.typing.hidden) {
        const stick = isNearBottom();
        ui.typing.hidden = false;
        if (stick) scrollToBottom();
      }
    } else if (!ui.typing.hidden) {
      ui.typing.hidden = true;
      ui.typingText.textContent = "";
    }
  }

  /** "Seen" under the visitor's newest message the operators have read (visitor seq). */
  function setSeen(seq) {
    if (!Number.isInteger(seq) || seq < (state.seenSeq || 0)) return;
    state.seenSeq = seq;
    let target = null;
    for (const [at, item] of state.bySeq) {
      if (at <= seq && item.dataset.sender === "visitor" && (!target || at > target.at)) {
        target = { at, item };
      }
    }
    const shown = ui.list.querySelector(".msg__seen");
    if (shown && target && shown.parentNode === target.item) return;
    if (shown) shown.remove();
    if (!target) return;
    const mark = el("p", "msg__seen");
    mark.textContent = "Seen";
    target.item.append(mark);
  }

  function setStatus(status) {
    if (status === state.status) return;
    state.status = status;
    if (status === "resolved") {
      ui.status.textContent = RESOLVED_TEXT;
      ui.status.hidden = false;
    } else {
      ui.status.hidden = true;
      ui.status.textContent = "";
    }
    refresh();
  }

  function showBanner(text, kind = "warning") {
    ui.banner.dataset.kind = kind;
    if (ui.banner.textContent !== text) ui.banner.textContent = text;
    ui.banner.hidden = false;
  }

  function hideBanner() {
    ui.banner.hidden = true;
    ui.banner.textContent = "";
  }

  /** Derived bits of the UI: welcome card, header subtitle. */
  function refresh() {
    ui.welcome.hidden = ui.list.children.length > 0 || ui.list.hasAttribute("aria-busy");
    const subtitle =
      state.operatorName && state.status !== "resolved"
        ? `You're chatting with ${state.operatorName}`
        : ui.away.hidden
          ? DEFAULT_SUBTITLE
          : "We’ll get back to you"; // away: no promise of help now
    if (ui.subtitle.textContent !== subtitle) ui.subtitle.textContent = subtitle;
  }

  // --- scrolling ----------------------------------------------------------------------------

  function isNearBottom() {
    const s = ui.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  function scrollToBottom() {
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
    ui.jump.hidden = true;
  }

  ui.scroller.addEventListener("scroll", () => {
    if (!ui.jump.hidden && isNearBottom()) ui.jump.hidden = true;
  });
  ui.jump.addEventListener("click", () => {
    scrollToBottom();
    ui.composer.focus();
  });

  return {
    buildMessage,
    setTime,
    receive,
    dropPending,
    regroup,
    setTyping,
    setSeen,
    setStatus,
    showBanner,
    hideBanner,
    refresh,
    isNearBottom,
    scrollToBottom,
  };
}
