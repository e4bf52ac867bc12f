// Live Operator Chat, operator inbox: an emoji picker beside the composer (issue 18). The
// chosen emoji goes in at the cursor, as if typed.

import { $, h } from "./dom.js";

const EMOJI = [
  ["😀", "grinning face"], ["🙂", "slightly smiling face"], ["😉", "winking face"],
  ["😊", "smiling face with smiling eyes"], ["😅", "grinning face with sweat"],
  ["😂", "face with tears of joy"], ["🤔", "thinking face"], ["😮", "face with open mouth"],
  ["😢", "crying face"], ["🙏", "folded hands"], ["👍", "thumbs up"], ["👋", "waving hand"],
  ["👏", "clapping hands"], ["🙌", "raising hands"], ["💪", "flexed biceps"], ["👀", "eyes"],
  ["❤️", "red heart"], ["🎉", "party popper"], ["✅", "check mark button"], ["⭐", "star"],
  ["🔥", "fire"], ["📦", "package"], ["🚚", "delivery truck"], ["⏰", "alarm clock"],
];

export function createEmojiPicker(text) {
  const toggle = $("emoji-toggle");
  const menu = $("emoji-menu");

  function show(open) {
    menu.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) menu.querySelector("button").focus();
  }

  function insert(emoji) {
    const { selectionStart: start, selectionEnd: end, value } = text;
    text.value = value.slice(0, start) + emoji + value.slice(end);
    text.setSelectionRange(start + emoji.length, start + emoji.length);
    show(false);
    text.focus();
    text.dispatchEvent(new Event("input", { bubbles: true }));
  }

  menu.replaceChildren(
    ...EMOJI.map(([emoji, name]) =>
      h("button", { type: "button", class: "emoji__item", "aria-label": name, title: name,
        onclick: () => insert(emoji) }, emoji)),
  );
  toggle.addEventListener("click", () => show(menu.hidden));
  menu.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      show(false);
      toggle.focus();
    }
  });
  document.addEventListener("click", (event) => {
    if (!menu.hidden && !toggle.contains(event.target) && !menu.contains(event.target)) {
      show(false);
    }
  });
  return { close: () => show(false) };
}
