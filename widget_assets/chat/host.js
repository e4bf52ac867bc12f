// Live Operator Chat, chat window: the page <-> iframe protocol with the website widget around
// it (docs/api.md, "Website widget").

import { displayName } from "./dom.js";

const PREVIEW_MAX_CHARS = 140; // of an operator's message, for the widget's preview bubble

/** The website widget around this window (loadchat?embed=1). It tells us whether its panel is
 * open; we tell it how many operator messages arrived while it was closed and the newest one's
 * text (for its preview bubble), and ask it to close on Escape. Nothing else crosses: the
 * conversation id and the session never leave this origin (docs/api.md, "Website widget").
 * ``onOpen`` runs each time the panel opens. */
export function createHostLink(composer, onOpen) {
  let hostOrigin = null; // the widget's page, pinned by its first message
  let open = false; // the widget may preload this frame with its panel closed
  let unread = 0;
  let page = null; // the widget's page: { url, title, referrer }
  const post = (data) => {
    if (hostOrigin) window.parent.postMessage(data, hostOrigin);
  };
  window.addEventListener("message", (event) => {
    const data = event.data;
    if (event.source !== window.parent || event.origin !== (hostOrigin || event.origin)) return;
    if (!data || data.type !== "liveop:state" || typeof data.open !== "boolean") return;
    hostOrigin = event.origin;
    if (data.open && !open) onOpen();
    open = data.open;
    if (data.page && typeof data.page === "object") page = data.page;
    unread = 0;
    // The widget focused this frame as its panel opened: the visitor can type at once.
    if (open && document.hasFocus()) composer.focus();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") post({ type: "liveop:close" });
  });
  return {
    /** The page around the widget, as it last told us (null until it has). */
    page() {
      return page;
    },
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

/** Where the visitor is, sent with each message (docs/api.md, "Visitor context"): in the
 * widget, the page around it; alone, the page that linked here. */
export function visitorContext(host) {
  const page = host && host.page();
  const text = (v) => (typeof v === "string" ? v : undefined);
  return {
    pageURL: page ? text(page.url) : undefined,
    pageTitle: page ? text(page.title) : undefined,
    referrer: page ? text(page.referrer) : document.referrer || undefined,
    timeZone: Intl.DateTimeFormat().resolvedOptions().timeZone || undefined,
  };
}
