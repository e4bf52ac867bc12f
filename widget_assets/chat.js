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
const GREETING_MAX_CHARS = 300; // a greeting the widget passes in the URL
const PREVIEW_MAX_CHARS = 140; // of an operator's message, for the widget's preview bubble
const ACCENT_PATTERN = /^#[0-9a-f]{6}$/i;

// The WebSocket transport (see createSocketTransport).
const SOCKET_HEARTBEAT_MS = 25000; // a ping this often keeps proxies from idling the socket out
const SOCKET_PONG_TIMEOUT_MS = 10000; // no frame at all this long after a ping: the socket is dead
const SOCKET_READY_TIMEOUT_MS = 8000; // from new WebSocket() to the server's "ready"
const SOCKET_SEND_TIMEOUT_MS = 10000; // no ack by then: the send is retried (same clientMsgID)
const SOCKET_FALLBACK_AFTER = 2; // sockets that never got ready, in a row: poll instead
const TYPING_EXPIRES_S = 5; // the server's typing heartbeat lifetime
const CLOSE_NOT_FOUND = 4004; // the server does not know the conversation: forget it
const CLOSE_RESUME = 4008; // we read too slowly: reconnect at once and resume

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

/** Returns call(command, fields) -> Promise<response JSON>, POSTing form-encoded fields;
 * ``always`` (the visitor's session and site) goes with every request. */
function createApi(base, always = {}) {
  return async function call(command, fields, { signal } = {}) {
    const body = new URLSearchParams();
    for (const [key, value] of Object.entries({ ...always, ...fields })) {
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
// createPollingTransport (chatpoll every 1.5 s) and createSocketTransport (one WebSocket) both
// have this shape; createTransport picks the socket and falls back to polling when WebSockets
// are unavailable or blocked. start(null) means "no conversation yet".

function createPollingTransport({ call, onMessages, onState, onConversation, onConnection, onGone }) {
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

  /** Before the first message: poll by session (sessionID rides on every call), which keeps
   * the visitor online on the site and hands over a conversation an operator opened for them.
   * Slower than a conversation's poll: nobody is typing yet. */
  async function sessionTick() {
    timer = null;
    const run = generation;
    let data;
    try {
      data = await call("chatpoll", {});
    } catch {
      if (run === generation) schedule(HIDDEN_POLL_INTERVAL_MS);
      return;
    }
    if (run !== generation) return;
    if (typeof data.convoID === "string" && data.convoID) onConversation(data.convoID);
    else schedule(HIDDEN_POLL_INTERVAL_MS);
  }

  async function tick() {
    timer = null;
    if (!convoID) return sessionTick();
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
      convoID = id || null;
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
// WebSocket transport: ws(s)://HOST/{account}/liveoperator/ws (docs/api.md, "Chat-window
// WebSocket"). One socket carries the conversation's messages, the operator's typing and status
// changes, and the visitor's sends, acks and typing.
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

function socketUrl(base) {
  const url = new URL(`${base}ws`, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

function createSocketTransport({
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
        break;
      }
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
        onState({ status: data.status || null });
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
        onState({ status: data.status || null });
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

/** The socket when the browser has WebSockets, else (or once they prove blocked) polling, for
 * the rest of this page load. Same interface; onKind reports which one is in use. */
function createTransport(options) {
  let convoID = null;
  let active;
  function usePolling() {
    active = createPollingTransport(options);
    options.onKind("polling");
  }
  if (typeof WebSocket === "function") {
    active = createSocketTransport({
      ...options,
      onFallback(socketConvo) {
        usePolling();
        active.start(socketConvo || convoID);
      },
    });
    options.onKind("socket");
  } else {
    usePolling();
  }
  return {
    start(id) {
      convoID = id || null;
      active.start(id);
    },
    stop() {
      convoID = null;
      active.stop();
    },
    send(fields) {
      return active.send(fields).catch((err) => {
        if (err && err.code === "transport_fallback") return active.send(fields);
        throw err;
      });
    },
    typing() {
      active.typing();
    },
    wake() {
      active.wake();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Storage
//
// localStorage, or, where the browser denies it to a third-party iframe (the website widget
// under Chromium blocking third-party cookies, incognito windows, Brave), a partitioned cookie
// (CHIPS), which those browsers still allow: kept per embedding site, as partitioned storage
// is, and like it never sent anywhere but this origin. Where both fail (a sandboxed frame), the
// window just forgets.

const COOKIE_MAX_AGE_S = 180 * 24 * 3600;

function localStore() {
  try {
    const store = window.localStorage;
    store.getItem("liveop:probe"); // throws where access is denied
    return store;
  } catch {
    return null;
  }
}

function cookieStore() {
  // Only the chat window's own URLs (/{account}/liveoperator/...) carry the cookies.
  const path = window.location.pathname.replace(/\/liveoperator\/.*$/, "/liveoperator/");
  const write = (key, value, maxAge) => {
    try {
      document.cookie =
        `${encodeURIComponent(key)}=${encodeURIComponent(value)}; Max-Age=${maxAge}; ` +
        `Path=${path}; Secure; SameSite=None; Partitioned`;
    } catch {
      /* cookies blocked too */
    }
  };
  return {
    getItem(key) {
      const prefix = `${encodeURIComponent(key)}=`;
      try {
        const entry = document.cookie.split("; ").find((c) => c.startsWith(prefix));
        return entry === undefined ? null : decodeURIComponent(entry.slice(prefix.length));
      } catch {
        return null;
      }
    },
    setItem: (key, value) => write(key, value, COOKIE_MAX_AGE_S),
    removeItem: (key) => write(key, "", 0),
  };
}

const store = localStore() || cookieStore();

const storage = {
  get(key) {
    try {
      return store.getItem(key);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      store.setItem(key, value);
    } catch {
      /* full, or blocked since */
    }
  },
  remove(key) {
    try {
      store.removeItem(key);
    } catch {
      /* blocked since */
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

/** The visitor's session: one random id per browser (per account), kept across conversations
 * and page loads, so the server can reach a visitor who has not written yet. */
function visitorSession(key) {
  const saved = storage.get(key);
  if (saved && /^sess_[A-Za-z0-9_-]{22}$/.test(saved)) return saved;
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // 128 bits: 22 base64url chars
  const id = `sess_${btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "")}`;
  storage.set(key, id);
  return id;
}

/** The site's brand color (the widget passes it): header, the visitor's bubbles, buttons. */
function useAccent(hex) {
  const style = document.documentElement.style; // CSSOM: allowed by the page's style-src
  const [r, g, b] = [1, 3, 5].map((at) => parseInt(hex.slice(at, at + 2), 16));
  style.setProperty("--accent", hex);
  style.setProperty("--accent-strong", `color-mix(in srgb, ${hex} 85%, #000)`);
  // Text on it: dark on light colors, white on dark ones (ITU-R BT.601 luma).
  const light = 0.299 * r + 0.587 * g + 0.114 * b > 160;
  style.setProperty("--accent-contrast", light ? "#1b1f29" : "#ffffff");
}

/** The website widget around this window (loadchat?embed=1). It tells us whether its panel is
 * open; we tell it how many operator messages arrived while it was closed and the newest one's
 * text (for its preview bubble), and ask it to close on Escape. Nothing else crosses: the
 * conversation id and the session never leave this origin (docs/api.md, "Website widget"). */
function createHostLink(composer) {
  let hostOrigin = null; // the widget's page, pinned by its first message
  let open = false; // the widget may preload this frame with its panel closed
  let unread = 0;
  const post = (data) => {
    if (hostOrigin) window.parent.postMessage(data, hostOrigin);
  };
  window.addEventListener("message", (event) => {
    const data = event.data;
    if (event.source !== window.parent || event.origin !== (hostOrigin || event.origin)) return;
    if (!data || data.type !== "liveop:state" || typeof data.open !== "boolean") return;
    hostOrigin = event.origin;
    open = data.open;
    unread = 0;
    // The widget focused this frame as its panel opened: the visitor can type at once.
    if (open && document.hasFocus()) composer.focus();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") post({ type: "liveop:close" });
  });
  return {
    /** Operator or bot messages just arrived. */
    arrived(replies) {
      if (open || !replies.length) return;
      unread += replies.length;
      post({ type: "liveop:unread", count: unread });
      const last = replies[replies.length - 1];
      const chars = Array.from(typeof last.message === "string" ? last.message.trim() : "");
      if (!chars.length) return;
      const text =
        chars.length > PREVIEW_MAX_CHARS
          ? `${chars.slice(0, PREVIEW_MAX_CHARS - 1).join("")}…`
          : chars.join("");
      post({ type: "liveop:preview", name: displayName(last.sender, last.operatorName), text });
    },
  };
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
  const base = apiBase(account);
  const sessionID = visitorSession(`liveop:${account}:session`);
  const siteID = Number(clean(body.dataset.site)) || 1;
  const call = createApi(base, { sessionID, siteID });

  const params = new URLSearchParams(window.location.search);
  const greeting = (params.get("greeting") || "").trim().slice(0, GREETING_MAX_CHARS);
  if (greeting) ui.welcomeText.textContent = greeting;
  const accent = params.get("color") || "";
  if (ACCENT_PATTERN.test(accent)) useAccent(accent);
  const embedded = params.get("embed") === "1" && window.parent !== window;
  const host = embedded ? createHostLink(ui.composer) : null;
  if (embedded) body.dataset.embed = "1"; // room in the header for the widget's close button

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
    onState({ typing, status }) {
      // Polling reports both on every answer; the socket reports each as it changes.
      if (status !== undefined) setStatus(status);
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

  function adoptConversation(convoID) {
    state.convoID = convoID;
    storage.set(convoKey, convoID);
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
        if (state.pending.has(pending.clientMsgID)) {
          // The socket acks with the seq only; its message:new event (matched by
          // clientMsgID) replaces the optimistic copy, before or after this ack.
          if (Number.isInteger(data.seq)) markAcked(pending);
          else markSent(pending);
        }
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

  function markAcked(pending) {
    // Stored by the server; stays pending until its message:new event claims the element.
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
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) transport.wake(); // back from the back/forward cache
  });

  // --- start --------------------------------------------------------------------------------

  updateSendButton();
  refresh();
  const fromUrl = clean(body.dataset.convo);
  const convoID = fromUrl || clean(storage.get(convoKey) || "");
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
