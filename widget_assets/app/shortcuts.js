// Live Operator Chat, operator inbox: keyboard shortcuts for triage (issue 18), listed in a
// dialog that "?" opens. They act only when no text field has the keyboard, so typing a reply
// never triggers one.

import { $ } from "./dom.js";

const TYPING_TAGS = new Set(["INPUT", "TEXTAREA", "SELECT"]);

/** Opens the conversation ``step`` rows away from the open one (the first when none is). */
function move(step) {
  const rows = [...$("convo-list").children];
  if (!rows.length) return;
  const at = rows.findIndex((r) => r.getAttribute("aria-selected") === "true");
  const to = rows[Math.min(rows.length - 1, Math.max(0, at < 0 ? 0 : at + step))];
  location.hash = `#/inbox/${encodeURIComponent(to.dataset.id)}`;
  to.focus();
}

/** Clicks ``id`` when the open conversation offers it. */
function press(id) {
  const button = $(id);
  if (!$("convo").hidden && !button.hidden) button.click();
}

const KEYS = {
  j: () => move(1),
  k: () => move(-1),
  r: () => {
    if (!$("convo").hidden) $("composer-text").focus();
  },
  a: () => press("accept"),
  e: () => press("resolve"),
  "?": () => $("shortcuts").showModal(),
};

export function enableShortcuts() {
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    if (TYPING_TAGS.has(target.tagName) || target.isContentEditable) return;
    if ($("shell").hidden || $("inbox-view").hidden || $("shortcuts").open) return;
    if (document.querySelector("dialog[open]")) return;
    const run = KEYS[event.key];
    if (!run) return;
    event.preventDefault();
    run();
  });
  $("shortcuts-close").addEventListener("click", () => $("shortcuts").close());
}
