// Live Operator Chat, chat window: what the window keeps in the browser.
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

export const storage = {
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

/** The visitor's session: one random id per browser (per account), kept across conversations
 * and page loads, so the server can reach a visitor who has not written yet. */
export function visitorSession(key) {
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
