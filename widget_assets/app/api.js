// Live Operator Chat, operator inbox: the session, the REST calls and the live event stream.

const SESSION_KEY = "liveop:inbox:session";
const API_ROOT = "/api/v1/";
const STREAM_PATH = "/api/v1/operator/stream";
// Every event kind operators receive, as server/event_catalogue.py declares them; an unlisted
// kind would be dropped without a word, so tests/server/test_event_catalogue.py keeps the two
// equal. "ready" and "reset" are the stream's controls, handled below.
const EVENT_KINDS = [
  "message:new",
  "conversation:new",
  "conversation:updated",
  "conversation:control_changed",
  "conversation:qualified",
  "typing",
  "read",
  "presence",
  "delivery",
  "sms_opt_out",
  "message:image",
  "contact:merged",
  "operator:updated",
];
const RECONNECT_BASE_MS = 500;
const RECONNECT_CAP_MS = 8000;

// The JWT lives in sessionStorage, not localStorage: it belongs to this tab and is gone when
// the tab closes, so a shared computer does not stay signed in, and other tabs do not pick it
// up. Script injection is what could read it either way; the page's CSP (no inline or foreign
// script) and writing all user data with textContent are what keep script out.
export const session = {
  load() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY));
      return saved && saved.token && saved.expires_at * 1000 > Date.now() ? saved : null;
    } catch {
      return null;
    }
  },
  save(value) {
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
  },
  clear() {
    sessionStorage.removeItem(SESSION_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0: no HTTP answer at all
    this.code = code;
  }
}

let token = null;
let onExpired = () => {};

/** Every later call carries ``bearer``; a 401 on one of them calls ``expired``. */
export function authenticate(bearer, expired) {
  token = bearer;
  onExpired = expired;
}

/** ``method`` on ``/api/v1/{path}``: GET fields go in the query string, other fields as JSON
 * (a FormData goes as multipart). Resolves to the answer; rejects with an ApiError. */
export async function api(method, path, fields) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  let url = API_ROOT + path;
  let body;
  if (fields instanceof FormData) {
    body = fields;
  } else if (fields && method === "GET") {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(fields)) {
      if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
    }
    if (query.toString()) url += `?${query}`;
  } else if (fields) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(fields);
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body, credentials: "omit" });
  } catch {
    throw new ApiError(0, "network", "The server cannot be reached. Check your connection.");
  }
  const answer = await response.json().catch(() => null);
  if (response.ok && answer && answer.success === true) return answer;
  const error = (answer && answer.error) || {};
  const failure = new ApiError(
    response.status,
    error.code || "http_error",
    error.message || `The server answered ${response.status}.`,
  );
  if (response.status === 401 && token) onExpired(failure);
  throw failure;
}

/** Saves ``/api/v1/{path}?{fields}`` (a CSV export) as a file: a plain link could not carry
 * the bearer token, so the answer is fetched and handed to the browser as a blob. */
export async function download(path, fields, filename) {
  const query = new URLSearchParams(fields);
  let response;
  try {
    response = await fetch(`${API_ROOT}${path}?${query}`, {
      headers: { Authorization: `Bearer ${token}` },
      credentials: "omit",
    });
  } catch {
    throw new ApiError(0, "network", "The server cannot be reached. Check your connection.");
  }
  if (!response.ok) {
    const error = (await response.json().catch(() => null))?.error || {};
    throw new ApiError(response.status, error.code || "http_error", error.message || "Failed.");
  }
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

/** The operator stream: EventSource, reconnected by us (not by the browser) so that a drop is
 * visible, the delay backs off, and an expired session is noticed instead of retried forever.
 *
 * ``handlers``: ``event(kind, data)`` for every account event; ``live(fresh)`` when the stream
 * is (again) flowing, ``fresh`` meaning the state must be (re)loaded from REST; ``down()`` when
 * it dropped; ``check()`` before each reconnect, a REST call that rejects if the session is
 * gone (its 401 signs the operator out, see ``authenticate``). */
export class LiveStream {
  #source = null;
  #timer = 0;
  #failures = 0;
  #stopped = false;

  constructor(bearer, handlers) {
    this.bearer = bearer;
    this.handlers = handlers;
    // The last event id received: the account event seq to resume from. Memory only: a page
    // load reloads its state from REST anyway and then takes a new cursor from "ready".
    this.cursor = null;
  }

  start() {
    this.#connect();
  }

  stop() {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#source?.close();
  }

  #connect() {
    const params = new URLSearchParams({ token: this.bearer });
    if (this.cursor !== null) params.set("last_event_id", this.cursor);
    const source = new EventSource(`${STREAM_PATH}?${params}`);
    this.#source = source;
    const opened = (fresh) => (event) => {
      this.cursor = event.lastEventId;
      this.#failures = 0;
      this.handlers.live(fresh);
    };
    // Without a cursor this is a page load: load the state now. With one, the server replays
    // exactly what was missed, so nothing needs reloading; "reset" means it could not.
    source.addEventListener("ready", opened(this.cursor === null));
    source.addEventListener("reset", opened(true));
    for (const kind of EVENT_KINDS) {
      source.addEventListener(kind, (event) => {
        // Ephemeral events (typing, presence) carry no id; lastEventId then still holds the
        // previous one, so it is always the resume point.
        if (event.lastEventId) this.cursor = event.lastEventId;
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        this.handlers.event(kind, data);
      });
    }
    source.onerror = () => {
      source.close();
      if (this.#stopped || source !== this.#source) return;
      this.handlers.down();
      this.#retry();
    };
  }

  #retry() {
    const delay = Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** this.#failures);
    this.#failures += 1;
    this.#timer = setTimeout(async () => {
      try {
        await this.handlers.check();
      } catch (error) {
        if (this.#stopped) return;
        if (!(error instanceof ApiError) || error.status === 0 || error.status >= 500) {
          this.#retry();
          return;
        }
      }
      if (!this.#stopped) this.#connect();
    }, delay * (0.75 + Math.random() / 2));
  }
}
