// Live Operator Chat, chat window: requests to the chat-window mode URLs, and the retry
// timing both transports share.

export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_CAP_MS = 10000;
export const TYPING_THROTTLE_MS = 3000; // the server expires the indicator after 5 s

export class ApiError extends Error {
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
export function createApi(base, always = {}) {
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

export function backoff(attempt) {
  const delay = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1));
  return Math.round(delay * (0.8 + Math.random() * 0.4)); // jitter, so clients spread out
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function randomId() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // randomUUID needs a secure context; getRandomValues does not.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
