// Live Operator Chat, operator inbox: the whole mail a customer's message came from (issue 15),
// headers and all, for an operator who needs what the text view leaves out (quoted history,
// routing headers, the Message-ID to trace a thread).
//
// The mail is shown as text only, never as HTML: it is whatever a stranger sent.

import { api } from "./api.js";
import { h } from "./dom.js";

/** Opens a dialog with the raw mail of message ``messageId``, or why it cannot be shown. */
async function showOriginal(messageId) {
  const raw = h("pre", { class: "original__raw", tabindex: "0",
    "aria-label": "The mail as it arrived" }, "Loading…");
  const dialog = h("dialog", { class: "dialog dialog--wide", "aria-labelledby": "original-title" },
    h("h3", { id: "original-title" }, "Original mail"),
    raw,
    h("div", { class: "admin__buttons" },
      h("button", { type: "button", class: "button button--quiet",
        onclick: () => dialog.close() }, "Close")));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  try {
    const answer = await api("GET", `operator/message/${encodeURIComponent(messageId)}/original`);
    raw.textContent = answer.raw;
  } catch (error) {
    raw.replaceWith(h("p", { class: "form-error", role: "alert" }, error.message));
  }
}

/** The "Show original" control under a customer's mail. */
export function originalLink(messageId) {
  return h("button", { type: "button", class: "msg__original",
    onclick: () => showOriginal(messageId) }, "Show original");
}
