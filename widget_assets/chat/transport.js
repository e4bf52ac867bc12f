// Live Operator Chat, chat window: the transport. Everything that talks to the server about a
// live conversation goes through one object:
//   start(convoID)  begin receiving: history first, then new messages
//   stop()          stop receiving
//   send(fields)    post one visitor message -> Promise<postmessage response>
//   typing()        tell the operator the visitor is typing (throttled)
//   wake()          check for news now (the tab became visible, the network came back)
// createPollingTransport (chatpoll every 1.5 s) and createSocketTransport (one WebSocket) both
// have this shape; createTransport picks the socket and falls back to polling when WebSockets
// are unavailable or blocked. start(null) means "no conversation yet".

import { createPollingTransport } from "./polling.js";
import { createSocketTransport } from "./socket.js";

/** The socket when the browser has WebSockets, else (or once they prove blocked) polling, for
 * the rest of this page load. Same interface; onKind reports which one is in use. */
export function createTransport(options) {
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
