// Live Operator Chat: the visitor chat window.
//
// A plain ES module (no build step, no dependencies, no network beyond this server). The page
// is rendered from chat.html, which carries the account and (optionally) the conversation in
// data attributes on <body>.
//
// Safety rule: text that came from a message or from the server is only ever written with
// textContent / text nodes, never parsed as HTML.

const POLL_INTERVAL_MS = 1500;
const HIDDEN_POLL_INTERVAL_MS = 5000; // the tab is in the background
const BACKOFF_BASE_MS = 1000;
const BACKOFF_CAP_MS = 10000;
const TYPING_THROTTLE_MS = 3000; // the server expires the indicator after 5 s
const SEND_MAX_RETRIES = 6; // transient failures retried (same clientMsgID) before "Not sent"
const POLL_BATCH = 200; // a full batch means more is waiting: poll again at once
const NEAR_BOTTOM_PX = 80;

const RESOLVED_TEXT = "This conversation was resolved — write again to reopen it";
const DEFAULT_SUBTITLE = "We’re here to help";

// ---------------------------------------------------------------------------------------------
// HTTP

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0 when the request never got an HTTP answer
    this.code = code;
  }

  /** Worth retrying as is: network trouble, overload, or a server error. */
  get transient() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

/** Returns call(command, fields) -> Promise<response JSON>, POSTing form-encoded fields. */
function createApi(base) {
  return async function call(command, fields, { signal } = {}) {
    const body = new URLSearchParams();
    for (const [key, value] of Object.entries(fields)) {
      if (value !== undefined && value !== null && value !== "") body.set(key, String(value));
    }
    let response;
    try {
      response = await fetch(base + command, {
        method: "POST",
        body, // URLSearchParams: sent as application/x-www-form-urlencoded
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
        signal,
      });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError(0, "network_error", "The network is unavailable.");
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      // Not JSON (a proxy error page, say): reported below with the HTTP status.
    }
    if (!response.ok || !data || data.success !== true) {
      const error = (data && data.error) || {};
      throw new ApiError(
        response.status,
        error.code || `http_${response.status}`,
        error.message || `The request failed (HTTP ${response.status}).`,
      );
    }
    return data;
  };
}

function backoff(attempt) {
  const delay = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1));
  return Math.round(delay * (0.8 + Math.random() * 0.4)); // jitter, so clients spread out
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function randomId() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // randomUUID needs a secure context; getRandomValues does not.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// ---------------------------------------------------------------------------------------------
// Transport
//
// Everything that talks to the server about a live conversation goes through one object:
//   start(convoID)  begin receiving: history first, then new messages
//   stop()          stop receiving
//   send(fields)    post one visitor message -> Promise<postmessage response>
//   typing()        tell the operator the visitor is typing (throttled)
//   wake()          check for news now (the tab became visible, the network came back)
// A WebSocket transport can later replace createPollingTransport with the same shape.

function createPollingTransport({ call, onMessages, onState, onConnection, onGone }) {
  let convoID = null;
  let cursor = 0; // highest seq received from polls: the next poll asks for afterSeq=cursor
  let historyLoaded = false;
  let timer = null; // set while a poll is scheduled; null while one is in flight or stopped
  let running = false;
  let failures = 0;
  let generation = 0; // bumped by start/stop so answers to an old run are ignored
  let controller = null;
  let lastTypingSent = 0;

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(tick, delay);
  }

  function interval() {
    return document.hidden ? HIDDEN_POLL_INTERVAL_MS : POLL_INTERVAL_MS;
  }

  async function tick() {
    timer = null;
    const run = generation;
    // The first request loads the latest history (the seed's since=0); after that the seq
    // cursor is exact even when clocks disagree. The cursor only moves with poll answers (not
    // with postmessage answers), so a message committed between two polls is never skipped.
    const fields = historyLoaded ? { convoID, afterSeq: cursor } : { convoID, since: 0 };
    controller = new AbortController();
    let data;
    try {
      data = await call("chatpoll", fields, { signal: controller.signal });
    } catch (err) {
      if (run !== generation || (err && err.name === "AbortError")) return;
      if (err.status === 404 && err.code === "conversation_not_found") {
        running = false;
        onGone(convoID);
        return;
      }
      failures += 1;
      onConnection({ ok: false, error: err, attempt: failures });
      schedule(backoff(failures));
      return;
    }
    if (run !== generation) return;
    failures = 0;
    onConnection({ ok: true });
    const messages = Array.isArray(data.messages) ? data.messages : [];
    for (const m of messages) if (Number.isInteger(m.seq) && m.seq > cursor) cursor = m.seq;
    const initial = !historyLoaded;
    historyLoaded = true;
    onMessages(messages, { initial });
    onState({ typing: Boolean(data.typing), status: data.status || null });
    schedule(messages.length >= POLL_BATCH ? 0 : interval());
  }

  function stop() {
    generation += 1;
    running = false;
    clearTimeout(timer);
    timer = null;
    if (controller) controller.abort();
    controller = null;
  }

  return {
    start(id) {
      stop();
      convoID = id;
      cursor = 0;
      historyLoaded = false;
      failures = 0;
      running = true;
      schedule(0);
    },
    stop,
    send(fields) {
      return call("postmessage", fields);
    },
    typing() {
      if (!running || !convoID) return; // no conversation yet: nobody to tell
      const now = Date.now();
      if (now - lastTypingSent < TYPING_THROTTLE_MS) return;
      lastTypingSent = now;
      call("chattyping", { convoID }).catch(() => {
        lastTypingSent = 0; // try again on the next keystroke
      });
    },
    wake() {
      if (running && timer !== null) schedule(0);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Storage (may throw in sandboxed or third-party iframes: then the window just forgets)

const storage = {
  get(key) {
    try {
      return window.localStorage.getItem(key);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch {
      /* storage blocked */
    }
  },
  remove(key) {
    try {
      window.localStorage.removeItem(key);
    } catch {
      /* storage blocked */
    }
  },
};

// ---------------------------------------------------------------------------------------------
// Rendering helpers

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"']+/gi;

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

/** Appends ``text`` to ``parent`` as text nodes, with http(s) URLs as safe links. */
function appendText(parent, text) {
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    const url = match[0].replace(/[.,;:!?)\]}]+$/, "");
    let href = null;
    try {
      const parsed = new URL(url);
      if (parsed.protocol === "http:" || parsed.protocol === "https:") href = parsed.href;
    } catch {
      href = null;
    }
    if (!href) continue;
    if (match.index > last) parent.append(document.createTextNode(text.slice(last, match.index)));
    const link = el("a");
    link.href = href;
    link.textContent = url;
    link.target = "_blank";
    link.rel = "noopener noreferrer nofollow";
    parent.append(link);
    last = match.index + url.length;
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
}

function formatTime(created) {
  const date = new Date(created * 1000);
  if (Number.isNaN(date.getTime())) return { short: "", full: "", iso: "" };
  const sameDay = date.toDateString() === new Date().toDateString();
  const time = date.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
  const short = sameDay
    ? time
    : `${date.toLocaleDateString([], { month: "short", day: "numeric" })}, ${time}`;
  return { short, full: date.toLocaleString(), iso: date.toISOString() };
}

function displayName(sender, operatorName) {
  if (sender === "bot") return "Assistant";
  if (sender === "operator") return operatorName || "Support";
  if (sender === "visitor") return "You";
  return "";
}

function clean(value) {
  // An unrendered template (opened as a file) still holds "{{...}}": treat it as absent.
  const v = (value || "").trim();
  return v.startsWith("{{") ? "" : v;
}

// ---------------------------------------------------------------------------------------------
// The window

function main() {
  const body = document.body;
  const $ = (id) => document.getElementById(id);
  const ui = {
    scroller: $("scroller"),
    list: $("messages"),
    welcome: $("welcome"),
    typing: $("typing"),
    typingText: $("typing-text"),
    status: $("status"),
    banner: $("banner"),
    jump: $("jump"),
    subtitle: $("subtitle"),
    avatar: $("avatar"),
    form: $("composer-form"),
    composer: $("composer"),
    send: $("send"),
    details: $("details"),
    fname: $("fname"),
    email: $("email"),
  };

  const account = clean(body.dataset.account);
  const title = clean(body.dataset.title) || "Support";
  ui.avatar.textContent = Array.from(title)[0].toUpperCase();
  if (!account) {
    showBanner("This chat window is not set up correctly (no account).", "error");
    ui.composer.disabled = true;
    ui.send.disabled = true;
    return;
  }

  const convoKey = `liveop:${account}:convo`;
  const visitorKey = `liveop:${account}:visitor`;
  const call = createApi(apiBase(account));

  const state = {
    convoID: null,
    bySeq: new Map(), // seq -> element: a message is never shown twice
    pending: new Map(), // clientMsgID -> {clientMsgID, text, el}: sent, not yet confirmed
    operatorName: null, // the latest operator who wrote: names the typing indicator
    status: null,
    sendQueue: Promise.resolve(), // one postmessage at a time: the first creates the convo
    sendTrouble: false,
  };

  const transport = createPollingTransport({
    call,
    onMessages(messages, { initial }) {
      const stick = initial || isNearBottom();
      let incoming = false;
      for (const m of messages) {
        const shown = receive(m);
        if (shown && m.sender !== "visitor") incoming = true;
      }
      if (initial) ui.list.removeAttribute("aria-busy");
      refresh();
      if (stick) scrollToBottom();
      else if (incoming) ui.jump.hidden = false;
    },
    onState({ typing, status }) {
      setStatus(status);
      setTyping(typing);
    },
    onConnection({ ok, error }) {
      if (ok) {
        if (!state.sendTrouble) hideBanner();
      } else {
        setTyping(false); // stale while we cannot ask
        showBanner(error.transient ? "Reconnecting…" : `Reconnecting… (${error.message})`);
      }
    },
    onGone(convoID) {
      // The stored conversation no longer exists (or belongs elsewhere): start fresh.
      if (convoID === state.convoID) forgetConversation();
    },
  });

  // --- conversation lifecycle ---------------------------------------------------------------

  function adoptConversation(convoID) {
    state.convoID = convoID;
    storage.set(convoKey, convoID);
    transport.start(convoID);
  }

  function forgetConversation() {
    transport.stop();
    if (storage.get(convoKey) === state.convoID) storage.remove(convoKey);
    state.convoID = null;
    for (const node of state.bySeq.values()) node.remove();
    state.bySeq.clear();
    state.operatorName = null;
    ui.list.removeAttribute("aria-busy");
    setStatus(null);
    setTyping(false);
    hideBanner();
    refresh();
  }

  // --- messages -----------------------------------------------------------------------------

  function buildMessage(sender, text, name, created) {
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
    appendText(bubble, text);
    item.append(bubble);
    const meta = el("div", "msg__meta");
    setTime(meta, created);
    item.append(meta);
    return item;
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
      item = buildMessage(m.sender, text, displayName(m.sender, m.operatorName), m.created);
      place(item, m.seq);
    }
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

  // --- sending ------------------------------------------------------------------------------

  function submit() {
    const text = ui.composer.value.trim();
    if (!text) {
      ui.composer.focus();
      return;
    }
    if (!ui.email.checkValidity()) {
      ui.details.open = true;
      ui.email.focus();
      ui.email.reportValidity();
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
      };
      try {
        const data = await transport.send(fields);
        if (state.sendTrouble) {
          state.sendTrouble = false;
          hideBanner();
        }
        if (!state.convoID && data.convoID) adoptConversation(data.convoID);
        if (data.message) {
          const stick = isNearBottom();
          receive(data.message, pending);
          refresh();
          if (stick) scrollToBottom();
        }
        if (state.pending.has(pending.clientMsgID)) markSent(pending);
        return;
      } catch (err) {
        if (err.status === 404 && err.code === "conversation_not_found" && fields.convoID) {
          forgetConversation(); // the stored conversation is gone: this message starts anew
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

  function markFailed(pending, reason) {
    const item = pending.el;
    item.classList.remove("is-sending");
    item.classList.add("is-failed");
    item.removeAttribute("aria-busy");
    const meta = item.querySelector(".msg__meta");
    const note = el("span", "msg__error");
    note.textContent = reason;
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
        : DEFAULT_SUBTITLE;
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

  // --- composer -----------------------------------------------------------------------------

  function autosize() {
    ui.composer.style.height = "auto";
    ui.composer.style.height = `${Math.min(ui.composer.scrollHeight, 140)}px`;
  }

  function updateSendButton() {
    ui.send.disabled = ui.composer.value.trim() === "";
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
    }
  } catch {
    /* ignore a corrupt entry */
  }
  for (const input of [ui.fname, ui.email]) {
    input.addEventListener("change", () => {
      storage.set(
        visitorKey,
        JSON.stringify({ fname: ui.fname.value.trim(), email: ui.email.value.trim() }),
      );
    });
  }

  // --- wake-ups -----------------------------------------------------------------------------

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) transport.wake();
  });
  window.addEventListener("online", () => transport.wake());

  // --- start --------------------------------------------------------------------------------

  updateSendButton();
  refresh();
  const fromUrl = clean(body.dataset.convo);
  const convoID = fromUrl || clean(storage.get(convoKey) || "");
  if (convoID) {
    ui.list.setAttribute("aria-busy", "true"); // history arrives as one batch
    refresh();
    adoptConversation(convoID);
  }
}

/** The endpoints live next to the page: /{account}/liveoperator/ (under any mount prefix). */
function apiBase(account) {
  const path = window.location.pathname;
  const at = path.indexOf("/liveoperator/loadchat");
  if (at > 0) return `${path.slice(0, at)}/liveoperator/`;
  return `/${encodeURIComponent(account)}/liveoperator/`;
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", main, { once: true });
} else {
  main();
}
