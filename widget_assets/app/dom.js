// Live Operator Chat, operator inbox: building DOM safely, and the words the views share.
//
// The one rule: data from the server or a user is only ever written as text (textContent,
// text nodes, attribute values), never parsed as HTML.

/** An element: ``props`` are attributes, except ``class``, ``text`` (its textContent),
 * ``dataset`` and ``on<event>`` listeners; children are nodes or strings (text nodes). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

export const $ = (id) => document.getElementById(id);

/** Shows ``text`` in an element that is hidden while empty (error lines, banners). */
export function say(el, text) {
  el.textContent = text || "";
  el.hidden = !text;
}

export const CHANNEL_LABELS = { chat: "Live chat", chatbot: "Chatbot", sms: "SMS", email: "Email" };
export const STATUS_LABELS = {
  open: "Open",
  waiting: "Waiting",
  active: "Active",
  resolved: "Resolved",
};

/** A channel indicator: a colored mark (CSS, by data-channel) and always its name in text. */
export function channelTag(channel) {
  return h("span", { class: "channel", dataset: { channel } }, CHANNEL_LABELS[channel] || channel);
}

export function statusTag(status) {
  return h("span", { class: "status", dataset: { status } }, STATUS_LABELS[status] || status);
}

/** How a visitor is called: their name, else how to reach them, else a stable short tag. */
export function contactName(conversation) {
  const c = conversation.contact_data || {};
  return c.name || c.email || c.phone || `Visitor ${conversation.id.slice(0, 6)}`;
}

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const day = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const full = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** Unix seconds as the list shows them: the time today, the date before. */
export function shortTime(seconds) {
  const date = new Date(seconds * 1000);
  return date.toDateString() === new Date().toDateString() ? clock.format(date) : day.format(date);
}

export const fullTime = (seconds) => full.format(new Date(seconds * 1000));

/** A <time> element: the short form shown, the full one on hover and for assistive tech. */
export function timeTag(seconds) {
  const date = new Date(seconds * 1000);
  return h("time", { datetime: date.toISOString(), title: fullTime(seconds) }, shortTime(seconds));
}

/** A button that puts ``text()`` on the clipboard and says so beside itself. ``label`` is its
 * accessible name, ``shown`` its visible text (the label when not given). */
export function copyButton(label, text, shown = label) {
  const said = h("span", { class: "copy-status", role: "status" });
  const button = h("button", { type: "button", class: "button", "aria-label": label,
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(text());
        said.textContent = "Copied.";
      } catch {
        said.textContent = "Could not copy: select the text and copy it.";
      }
    } }, shown);
  return h("span", { class: "copy" }, button, said);
}
