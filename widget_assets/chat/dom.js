// Live Operator Chat, chat window: building DOM safely, and the words and colors it shows.
//
// The one rule: text that came from a message or from the server is only ever written with
// textContent / text nodes, never parsed as HTML.

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"']+/gi;

export function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

/** Appends ``text`` to ``parent`` as text nodes, with http(s) URLs as safe links. */
export function appendText(parent, text) {
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

export function formatTime(created) {
  const date = new Date(created * 1000);
  if (Number.isNaN(date.getTime())) return { short: "", full: "", iso: "" };
  const sameDay = date.toDateString() === new Date().toDateString();
  const time = date.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
  const short = sameDay
    ? time
    : `${date.toLocaleDateString([], { month: "short", day: "numeric" })}, ${time}`;
  return { short, full: date.toLocaleString(), iso: date.toISOString() };
}

export function displayName(sender, operatorName) {
  if (sender === "bot") return "Assistant";
  if (sender === "operator") return operatorName || "Support";
  if (sender === "visitor") return "You";
  return "";
}

export function clean(value) {
  // An unrendered template (opened as a file) still holds "{{...}}": treat it as absent.
  const v = (value || "").trim();
  return v.startsWith("{{") ? "" : v;
}

/** The site's brand color (the widget passes it): header, the visitor's bubbles, buttons. */
export function useAccent(hex) {
  const style = document.documentElement.style; // CSSOM: allowed by the page's style-src
  const [r, g, b] = [1, 3, 5].map((at) => parseInt(hex.slice(at, at + 2), 16));
  style.setProperty("--accent", hex);
  style.setProperty("--accent-strong", `color-mix(in srgb, ${hex} 85%, #000)`);
  // Text on it: dark on light colors, white on dark ones (ITU-R BT.601 luma).
  const light = 0.299 * r + 0.587 * g + 0.114 * b > 160;
  style.setProperty("--accent-contrast", light ? "#1b1f29" : "#ffffff");
}
