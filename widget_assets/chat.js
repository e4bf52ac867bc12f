// Live Operator Chat: the visitor chat window.
//
// Plain ES modules (no build step, no dependencies, no network beyond this server), as the
// operator inbox is. The page is rendered from chat.html, which carries the account and
// (optionally) the conversation in data attributes on <body>. This module wires the parts in
// chat/ together and owns the conversation's lifecycle: which conversation the window shows,
// and which one it remembers.
//
// Safety rule: text that came from a message or from the server is only ever written with
// textContent / text nodes, never parsed as HTML (chat/dom.js).

import { createApi } from "./chat/api.js";
import { createAway } from "./chat/away.js";
import { createComposer } from "./chat/composer.js";
import { clean, useAccent } from "./chat/dom.js";
import { createHostLink, visitorContext } from "./chat/host.js";
import { createRating } from "./chat/rating.js";
import { socketUrl } from "./chat/socket.js";
import { storage, visitorSession } from "./chat/storage.js";
import { createTransport } from "./chat/transport.js";
import { createView } from "./chat/view.js";

const GREETING_MAX_CHARS = 300; // a greeting the widget passes in the URL
const ACCENT_PATTERN = /^#[0-9a-f]{6}$/i;

function main() {
  const body = document.body;
  const $ = (id) => document.getElementById(id);
  const ui = {
    scroller: $("scroller"),
    list: $("messages"),
    welcome: $("welcome"),
    welcomeText: $("welcome-text"),
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
    phone: $("phone"),
    away: $("away"),
    awayTitle: $("away-title"),
    awayText: $("away-text"),
    awayWhen: $("away-when"),
    awayEmail: $("away-email"),
  };

  const state = {
    convoID: null,
    bySeq: new Map(), // seq -> element: a message is never shown twice
    pending: new Map(), // clientMsgID -> {clientMsgID, text, el}: sent, not yet confirmed
    offered: false, // the server just handed us a conversation an operator opened
    operatorName: null, // the latest operator who wrote: names the typing indicator
    status: null,
    sendQueue: Promise.resolve(), // one postmessage at a time: the first creates the convo
    sendTrouble: false,
  };

  const view = createView(ui, state);
  const { hideBanner, isNearBottom, receive, refresh, scrollToBottom } = view;
  const { setStatus, setTyping, showBanner } = view;

  const account = clean(body.dataset.account);
  const title = clean(body.dataset.title) || "Support";
  ui.avatar.textContent = Array.from(title)[0].toUpperCase();
  if (!account) {
    view.showBanner("This chat window is not set up correctly (no account).", "error");
    ui.composer.disabled = true;
    ui.send.disabled = true;
    return;
  }

  const convoKey = `liveop:${account}:convo`;
  const visitorKey = `liveop:${account}:visitor`;
  const base = apiBase(account);
  const sessionID = visitorSession(`liveop:${account}:session`);
  const siteID = Number(clean(body.dataset.site)) || 1;
  const call = createApi(base, { sessionID, siteID });
  const rating = createRating($("rating"), call);
  const away = createAway(ui, `${base}widget-config?site=${siteID}`, refresh);

  const params = new URLSearchParams(window.location.search);
  const greeting = (params.get("greeting") || "").trim().slice(0, GREETING_MAX_CHARS);
  if (greeting) ui.welcomeText.textContent = greeting;
  const accent = params.get("color") || "";
  if (ACCENT_PATTERN.test(accent)) useAccent(accent);
  const embedded = params.get("embed") === "1" && window.parent !== window;
  // The widget's panel opening is when its visitor reads whether anybody is here.
  const host = embedded ? createHostLink(ui.composer, () => away.check()) : null;
  if (embedded) body.dataset.embed = "1"; // room in the header for the widget's close button

  const transport = createTransport({
    call,
    url: socketUrl(base),
    hello: { sessionID, siteID },
    onKind(kind) {
      body.dataset.transport = kind; // "socket" or "polling": for support and for the tests
    },
    onMessages(messages, { initial }) {
      const stick = initial || isNearBottom();
      let incoming = false;
      let replies = []; // operator and bot messages the visitor has not answered
      for (const m of messages) {
        const shown = receive(m);
        if (shown && m.sender !== "visitor") incoming = true;
        if (shown && !initial && m.sender === "operator") away.answered();
        if (m.sender === "visitor") replies = [];
        else if (shown && (m.sender === "operator" || m.sender === "bot")) replies.push(m);
      }
      // A stored conversation's history is old news; what an operator just wrote to open
      // one (a proactive message) is not.
      if (host && (!initial || state.offered)) host.arrived(replies);
      if (initial) {
        state.offered = false;
        ui.list.removeAttribute("aria-busy");
      }
      refresh();
      if (stick) scrollToBottom();
      else if (incoming) ui.jump.hidden = false;
    },
    onState({ typing, status, seenSeq }) {
      if (seenSeq !== undefined) view.setSeen(seenSeq);
      // Polling reports both on every answer; the socket reports each as it changes.
      if (status !== undefined) {
        setStatus(status);
        if (status === "resolved" && state.convoID) rating.offer(state.convoID);
        else rating.hide();
      }
      if (typing !== undefined) setTyping(typing);
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
    onConversation(convoID) {
      if (convoID === state.convoID) return;
      clearView();
      state.offered = true;
      resume(convoID);
    },
  });

  // --- conversation lifecycle ---------------------------------------------------------------
  //
  // The window remembers (per account, in its own origin's storage) the conversation this
  // browser started, or one an operator opened for its session. A conversation named in the
  // URL (loadchat/{convoID}) is shown and continued in this window, but never remembered:
  // whoever made the link holds the same capability, and a link that became the remembered
  // conversation would hand them everything the visitor writes later, in the plain window and
  // in a same-site widget (conversation fixation, docs/api.md).

  const linked = clean(body.dataset.convo);

  function adoptConversation(convoID) {
    state.convoID = convoID;
    if (convoID !== linked) storage.set(convoKey, convoID);
    transport.start(convoID);
  }

  /** Shows a stored conversation: its history arrives as one batch. */
  function resume(convoID) {
    ui.list.setAttribute("aria-busy", "true");
    refresh();
    adoptConversation(convoID);
  }

  function forgetConversation() {
    transport.start(null); // the socket reconnects without a conversation; polling just stops
    if (storage.get(convoKey) === state.convoID) storage.remove(convoKey);
    clearView();
  }

  /** No conversation on screen. */
  function clearView() {
    state.convoID = null;
    for (const node of state.bySeq.values()) node.remove();
    state.bySeq.clear();
    state.operatorName = null;
    ui.list.removeAttribute("aria-busy");
    setStatus(null);
    rating.hide();
    setTyping(false);
    hideBanner();
    refresh();
  }

  const composer = createComposer({
    ui,
    state,
    view,
    transport,
    conversation: { adopt: adoptConversation, forget: forgetConversation },
    visitorKey,
    context: () => visitorContext(host),
  });

  // --- wake-ups -----------------------------------------------------------------------------

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) return;
    transport.wake();
    away.check();
  });
  window.addEventListener("online", () => transport.wake());
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) transport.wake(); // back from the back/forward cache
  });

  // --- start --------------------------------------------------------------------------------

  composer.updateSendButton();
  refresh();
  away.check();
  const convoID = linked || clean(storage.get(convoKey) || "");
  if (convoID) {
    resume(convoID);
  } else {
    transport.start(null); // the socket connects now, so the first message goes out at once
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
