// Live Operator Chat, chat window: the polling transport (chatpoll every 1.5 s), for browsers
// and networks without WebSockets. Its interface is described in transport.js.

import { backoff, TYPING_THROTTLE_MS } from "./api.js";

const POLL_INTERVAL_MS = 1500;
const HIDDEN_POLL_INTERVAL_MS = 5000; // the tab is in the background
const POLL_BATCH = 200; // a full batch means more is waiting: poll again at once

export function createPollingTransport({ call, onMessages, onState, onConversation, onConnection, onGone }) {
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
    onState({ typing: Boolean(data.typing), status: data.status || null, seenSeq: data.seenSeq });
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
