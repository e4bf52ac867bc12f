// Live Operator Chat, chat window: the WebSocket transport, ws(s)://HOST/{account}/liveoperator/ws
// (docs/api.md, "Visitor WebSocket"); its interface is described in transport.js. One socket
// carries the conversation's messages, the operator's typing and status changes, and the
// visitor's sends, acks and typing.
//
// History: a stored conversation is first loaded with chatpoll since=0, exactly as the polling
// transport does, and only then does the socket say hello with the highest seq loaded. The
// socket's own replay (hello with seq 0) would also work, but chatpoll since=0 returns the
// newest 200 messages at most (a replay sends everything, or "reset" past 1000) together with
// the conversation's status and the operator's typing state, which the socket never sends on
// connect; it also marks the operators' messages as read, as the window always has. After a
// drop the socket resumes from the highest seq received, and one chatpoll afterSeq fetches the
// status (and typing) that changed while it was down, since status events are not replayed.
//
// Sends are kept until acked and re-sent, with the same clientMsgID, after every reconnect: the
// server stores a clientMsgID once, so a send whose ack was lost is answered "duplicate" and
// shown once. The ack carries the seq but not the message; the message itself arrives as a
// message:new event (before or after the ack), which the window matches by clientMsgID.

import {
  ApiError,
  BACKOFF_BASE_MS,
  BACKOFF_CAP_MS,
  TYPING_THROTTLE_MS,
  backoff,
  randomId,
} from "./api.js";

const SOCKET_HEARTBEAT_MS = 25000; // a ping this often keeps proxies from idling the socket out
const SOCKET_PONG_TIMEOUT_MS = 10000; // no frame at all this long after a ping: the socket is dead
const SOCKET_READY_TIMEOUT_MS = 8000; // from new WebSocket() to the server's "ready"
const SOCKET_SEND_TIMEOUT_MS = 10000; // no ack by then: the send is retried (same clientMsgID)
const SOCKET_FALLBACK_AFTER = 2; // sockets that never got ready, in a row: poll instead
const TYPING_EXPIRES_S = 5; // the server's typing heartbeat lifetime
const CLOSE_NOT_FOUND = 4004; // the server does not know the conversation: forget it
const CLOSE_RESUME = 4008; // we read too slowly: reconnect at once and resume

/** Reconnect delay: exponential, capped, and spread widely so a restart is not a stampede. */
function socketBackoff(attempt) {
  const delay = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1));
  return Math.round(delay * (0.5 + Math.random()));
}

// Error frames carry a code; the window reasons about HTTP-like statuses (see ApiError).
const SOCKET_ERROR_STATUS = {
  conversation_not_found: 404,
  account_not_found: 404,
  client_msg_id_reused: 409,
};

export function socketUrl(base) {
  const url = new URL(`${base}ws`, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

export function createSocketTransport({
  url,
  hello: introduction,
  call,
  onMessages,
  onState,
  onConnection,
  onGone,
  onFallback,
  onConversation,
}) {
  let convoID = null; // the conversation the socket follows (adopted from the first ack too)
  let cursor = 0; // highest seq received: the hello after a drop resumes from here
  let wanted = false; // a socket should be open (started, or a send is waiting)
  let socket = null; // the current WebSocket, connecting or open; null while down
  let ready = false; // the server answered our hello
  let unread = 0; // the newest reply the socket brought that the server has not heard we saw
  let everReady = false; // some socket got ready on this page load: never fall back then
  let failedOpens = 0; // sockets in a row that closed before ready (while never ready)
  let attempt = 0; // failed connections in a row: drives the backoff
  let resumed = false; // the next ready follows a drop: refresh what is not replayed
  let fellBack = false;
  let loading = false; // the history request is in flight or scheduled
  let historyFailures = 0;
  let generation = 0; // bumped by start/stop so answers to an old run are ignored
  let controller = null;
  let lastTypingSent = 0;
  const timers = { reconnect: 0, ready: 0, heartbeat: 0, pong: 0, typing: 0, history: 0 };
  const outbox = new Map(); // clientMsgID -> {frame, resolve, reject, timer}: not yet acked

  function clear(...names) {
    for (const name of names) {
      clearTimeout(timers[name]); // also clears intervals: one pool of timer ids
      timers[name] = 0;
    }
  }

  // --- connection -------------------------------------------------------------------------

  function connect() {
    clear("reconnect");
    if (socket || fellBack || !wanted || loading) return;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      afterClose(0, false); // a blocked or malformed URL: counts as a failed open
      return;
    }
    socket = ws;
    ready = false;
    timers.ready = setTimeout(() => lose(ws, 0), SOCKET_READY_TIMEOUT_MS);
    ws.addEventListener("open", () => {
      if (ws !== socket) return;
      const hello = { type: "hello", ...introduction, seq: convoID ? cursor : 0 };
      if (convoID) hello.convoID = convoID;
      ws.send(JSON.stringify(hello));
    });
    ws.addEventListener("message", (event) => {
      if (ws === socket) onFrame(event.data);
    });
    ws.addEventListener("close", (event) => lose(ws, event.code));
    // An error means the socket failed (the close codes we act on come with clean closes).
    // Chromium fires only this, and no close, when the CSP blocks the connection.
    ws.addEventListener("error", () => lose(ws, 0));
  }

  /** Closes a socket we no longer use; one still connecting is closed once open (closing it
   * earlier makes the browser log an error). */
  function discard(ws) {
    if (!ws) return;
    if (ws.readyState === WebSocket.CONNECTING) {
      ws.addEventListener("open", () => ws.close(1000));
    } else if (ws.readyState === WebSocket.OPEN) {
      ws.close(1000);
    }
  }

  /** The current socket closed (or we gave up on it): decide what happens next. */
  function lose(ws, code) {
    if (ws !== socket) return;
    socket = null;
    const wasReady = ready;
    ready = false;
    discard(ws);
    afterClose(code, wasReady);
  }

  function afterClose(code, wasReady) {
    clear("ready", "heartbeat", "pong");
    hideTyping(); // stale while we cannot hear
    if (!wanted || fellBack) return;
    if (code === CLOSE_NOT_FOUND && convoID) {
      // The conversation is gone (or belongs elsewhere): waiting sends fail like postmessage.
      const gone = convoID;
      wanted = false;
      convoID = null;
      cursor = 0;
      rejectAll(new ApiError(404, "conversation_not_found", "The conversation no longer exists."));
      onGone(gone);
      return;
    }
    if (wasReady) resumed = true;
    if (everReady) {
      onConnection({
        ok: false,
        error: new ApiError(0, "socket_closed", "The connection was interrupted."),
        attempt: attempt + 1,
      });
    } else {
      // Never connected on this page load: WebSockets may be blocked (a proxy, a firewall, an
      // extension). An offline browser proves nothing about that.
      if (navigator.onLine !== false) failedOpens += 1;
      if (failedOpens >= SOCKET_FALLBACK_AFTER) {
        fallBack();
        return;
      }
    }
    attempt += 1;
    // Too slow (4008): resume at once; anything else, server restarts included: back off.
    const delay =
      code === CLOSE_RESUME && attempt === 1 ? 100 + Math.random() * 400 : socketBackoff(attempt);
    timers.reconnect = setTimeout(connect, delay);
  }

  function fallBack() {
    fellBack = true;
    wanted = false;
    generation += 1;
    if (controller) controller.abort();
    clear(...Object.keys(timers));
    const ws = socket;
    socket = null;
    ready = false;
    discard(ws);
    // Waiting sends go out again through polling (see createTransport).
    rejectAll(new ApiError(0, "transport_fallback", "Switching to polling."));
    onFallback(convoID);
  }

  // --- frames -----------------------------------------------------------------------------

  function onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    clear("pong"); // any frame proves the socket alive
    switch (frame.type) {
      case "ready":
        onReady();
        break;
      case "message:new": {
        const m = frame.data;
        if (!m || typeof m !== "object" || !Number.isInteger(frame.seq)) return;
        adopt(m.convoID);
        if (m.convoID !== convoID) return;
        if (frame.seq > cursor) cursor = frame.seq; // events arrive gapless, in seq order
        if (m.sender === "operator" || m.sender === "bot") hideTyping(); // the reply is here
        onMessages([m], { initial: false });
        // A poll marks what it returns read; what the socket brings, the window says it showed.
        if (m.sender !== "visitor") {
          unread = Math.max(unread, frame.seq);
          sayRead();
        }
        break;
      }
      case "read":
        if (frame.data && Number.isInteger(frame.data.seenSeq)) {
          onState({ seenSeq: frame.data.seenSeq });
        }
        break;
      case "typing":
        if (frame.data && frame.data.side === "operator") showTyping(frame.data.expires_in);
        break;
      case "status":
        if (frame.data && typeof frame.data.status === "string") {
          onState({ status: frame.data.status });
        }
        break;
      case "reset":
        // Too far behind to replay: reload the recent history, then carry on from here.
        if (Number.isInteger(frame.seq) && frame.seq > cursor) cursor = frame.seq;
        loadHistory(false);
        break;
      case "conversation": {
        // The server opened a conversation for this visitor's session (an operator wrote
        // first): the window adopts it, which reconnects the socket with it.
        const id = frame.data && frame.data.convoID;
        if (typeof id === "string" && id && id !== convoID) onConversation(id);
        break;
      }
      case "ack":
        adopt(frame.convoID);
        settle(frame.clientMsgID, (entry) =>
          entry.resolve({
            convoID: frame.convoID,
            clientMsgID: frame.clientMsgID,
            seq: frame.seq,
            duplicate: Boolean(frame.duplicate),
            message: null, // arrives as a message:new event
          }),
        );
        break;
      case "error": {
        const error = frame.error || {};
        const code = error.code || "error";
        settle(frame.clientMsgID, (entry) =>
          entry.reject(
            new ApiError(SOCKET_ERROR_STATUS[code] || 400, code, error.message || "Not sent."),
          ),
        );
        break;
      }
      default:
        break; // pong, or something newer than this page
    }
  }

  function onReady() {
    ready = true;
    everReady = true;
    failedOpens = 0;
    attempt = 0;
    clear("ready", "heartbeat");
    onConnection({ ok: true });
    timers.heartbeat = setInterval(ping, SOCKET_HEARTBEAT_MS);
    for (const entry of outbox.values()) transmit(entry); // unacked: again, same clientMsgID
    if (resumed && convoID) refresh();
    resumed = false;
  }

  /** The server subscribed a hello without a conversation to the one its first send made. */
  function adopt(id) {
    if (!convoID && typeof id === "string" && id) {
      convoID = id;
      cursor = 0;
    }
  }

  function ping() {
    const ws = socket;
    if (!ready || !ws) return;
    ws.send('{"type":"ping"}');
    if (!timers.pong) timers.pong = setTimeout(() => lose(ws, 0), SOCKET_PONG_TIMEOUT_MS);
  }

  /** Tells the server the visitor has seen the replies up to ``unread``, once the page shows. */
  function sayRead() {
    const ws = socket;
    if (!unread || !ready || !ws || document.visibilityState !== "visible") return;
    ws.send(JSON.stringify({ type: "read", seq: unread }));
    unread = 0;
  }
  document.addEventListener("visibilitychange", sayRead);

  function showTyping(seconds) {
    clear("typing");
    onState({ typing: true });
    const ms = (Number(seconds) > 0 ? Number(seconds) : TYPING_EXPIRES_S) * 1000;
    timers.typing = setTimeout(() => {
      timers.typing = 0;
      onState({ typing: false });
    }, ms);
  }

  function hideTyping() {
    if (!timers.typing) return;
    clear("typing");
    onState({ typing: false });
  }

  // --- HTTP next to the socket ------------------------------------------------------------

  function loadHistory(initial) {
    clear("history");
    if (controller) controller.abort();
    const run = generation;
    const id = convoID;
    loading = initial; // the first hello waits for it; a reload after "reset" does not
    controller = new AbortController();
    call("chatpoll", { convoID: id, since: 0 }, { signal: controller.signal }).then(
      (data) => {
        if (run !== generation) return;
        loading = false;
        historyFailures = 0;
        const messages = Array.isArray(data.messages) ? data.messages : [];
        for (const m of messages) if (Number.isInteger(m.seq) && m.seq > cursor) cursor = m.seq;
        if (initial) onConnection({ ok: true });
        onMessages(messages, { initial });
        onState({ status: data.status || null, seenSeq: data.seenSeq });
        if (data.typing) showTyping(TYPING_EXPIRES_S);
        if (initial) connect();
      },
      (err) => {
        if (run !== generation || (err && err.name === "AbortError")) return;
        if (err.status === 404 && err.code === "conversation_not_found") {
          loading = false;
          wanted = false;
          convoID = null;
          onGone(id);
          return;
        }
        historyFailures += 1;
        onConnection({ ok: false, error: err, attempt: historyFailures });
        timers.history = setTimeout(() => loadHistory(initial), backoff(historyFailures));
      },
    );
  }

  /** After a drop: whatever the replay does not carry (status, typing). Best effort. */
  function refresh() {
    const run = generation;
    const from = cursor;
    call("chatpoll", { convoID, afterSeq: from }).then(
      (data) => {
        if (run !== generation) return;
        const messages = Array.isArray(data.messages) ? data.messages : [];
        let next = from;
        for (const m of messages) if (Number.isInteger(m.seq) && m.seq === next + 1) next = m.seq;
        if (next > cursor) cursor = next;
        if (messages.length) onMessages(messages, { initial: false }); // shown once (by seq)
        onState({ status: data.status || null, seenSeq: data.seenSeq });
        if (data.typing) showTyping(TYPING_EXPIRES_S);
      },
      () => {
        /* the socket carries on; the next status event corrects it */
      },
    );
  }

  // --- sending ----------------------------------------------------------------------------

  function transmit(entry) {
    if (!ready || !socket) return;
    try {
      socket.send(JSON.stringify(entry.frame));
    } catch {
      /* closing: sent again after the reconnect */
    }
  }

  function settle(clientMsgID, fn) {
    const entry = typeof clientMsgID === "string" ? outbox.get(clientMsgID) : undefined;
    if (entry) fn(entry);
  }

  function rejectAll(error) {
    for (const entry of Array.from(outbox.values())) entry.reject(error);
  }

  function stop() {
    generation += 1;
    wanted = false;
    loading = false;
    if (controller) controller.abort();
    controller = null;
    clear("reconnect", "ready", "heartbeat", "pong", "history");
    hideTyping();
    const ws = socket;
    socket = null;
    ready = false;
    discard(ws);
    convoID = null;
    cursor = 0;
    resumed = false;
    attempt = 0;
  }

  return {
    kind: "socket",
    start(id) {
      const next = id || null;
      if (fellBack) return;
      if (next === convoID && wanted && (socket || timers.reconnect || loading)) return;
      // (The first send on a socket without a conversation makes one and the server follows
      // it on that socket: the window's start() with it is the line above, a no-op.)
      stop();
      wanted = true;
      convoID = next;
      if (convoID) loadHistory(true);
      else connect();
    },
    stop() {
      stop();
      rejectAll(new ApiError(0, "stopped", "The chat was restarted."));
    },
    send(fields) {
      return new Promise((resolve, reject) => {
        if (fellBack) {
          reject(new ApiError(0, "transport_fallback", "Switching to polling."));
          return;
        }
        const frame = { type: "send", message: fields.message };
        frame.clientMsgID = fields.clientMsgID || randomId();
        if (fields.fname) frame.fname = fields.fname;
        if (fields.email) frame.email = fields.email;
        if (fields.phone) frame.phone = fields.phone;
        for (const key of ["pageURL", "pageTitle", "referrer", "timeZone"]) {
          if (fields[key]) frame[key] = fields[key];
        }
        const id = frame.clientMsgID;
        const entry = { frame };
        const done = () => {
          clearTimeout(entry.timer);
          if (outbox.get(id) === entry) outbox.delete(id);
        };
        entry.resolve = (value) => {
          done();
          resolve(value);
        };
        entry.reject = (error) => {
          done();
          reject(error);
        };
        entry.timer = setTimeout(
          () => entry.reject(new ApiError(0, "timeout", "The server did not answer in time.")),
          SOCKET_SEND_TIMEOUT_MS,
        );
        const previous = outbox.get(id);
        if (previous) previous.reject(new ApiError(0, "superseded", "Sent again."));
        outbox.set(id, entry);
        wanted = true;
        if (ready) transmit(entry);
        else if (!socket && !timers.reconnect) connect();
      });
    },
    typing() {
      if (!ready || !socket || !convoID) return; // no conversation yet: nobody to tell
      const now = Date.now();
      if (now - lastTypingSent < TYPING_THROTTLE_MS) return;
      lastTypingSent = now;
      socket.send('{"type":"typing"}');
    },
    wake() {
      if (fellBack || !wanted) return;
      if (ready) ping(); // a socket may look open long after the network went away
      else if (timers.reconnect) connect();
      else if (timers.history) loadHistory(loading);
    },
  };
}
