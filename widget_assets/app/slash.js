// Live Operator Chat, operator inbox: "/" at the start of the composer opens the canned
// responses (issue 18), the operator's own marked "Mine". Each shows its name and text; the
// words after "/" narrow them; Enter (or a click) inserts the top match with its macros
// filled, as text the operator may still edit before sending; Escape closes the list.

import { $, h } from "./dom.js";

const SHOWN_MAX = 8;

/** ``canned()`` lists the responses; ``fill(c)`` is the text to insert for one. */
export function createSlashPicker(text, { canned, fill }) {
  const menu = $("slash-menu");
  let found = [];

  const query = () => (text.value.startsWith("/") ? text.value.slice(1).toLowerCase() : null);

  function update() {
    const typed = query();
    if (typed === null || typed.includes("\n")) return close();
    const words = typed.split(/\s+/).filter(Boolean);
    found = canned()
      .filter((c) => words.every((w) => `${c.name} ${c.tag} ${c.message}`.toLowerCase().includes(w)))
      .slice(0, SHOWN_MAX);
    menu.replaceChildren(
      ...(found.length
        ? found.map((c, index) =>
            h("li", { role: "option", class: "slash__item", "aria-selected": String(index === 0),
              onmousedown: (event) => event.preventDefault(), onclick: () => pick(c) },
              h("span", { class: "slash__name" }, c.name,
                c.personal && h("span", { class: "mine-mark", title: "Your own canned response" }, "Mine")),
              h("span", { class: "slash__text" }, fill(c))))
        : [h("li", { class: "slash__none" }, "No canned response matches.")]),
    );
    menu.hidden = false;
    text.setAttribute("aria-expanded", "true");
  }

  function close() {
    found = [];
    menu.hidden = true;
    text.setAttribute("aria-expanded", "false");
  }

  function pick(c) {
    text.value = fill(c);
    close();
    text.focus();
    text.setSelectionRange(text.value.length, text.value.length);
  }

  text.setAttribute("aria-controls", "slash-menu");
  text.setAttribute("aria-expanded", "false");
  text.addEventListener("input", update);
  text.addEventListener("blur", close);

  return {
    close,
    /** The composer's keydown: true when the picker used the key. */
    handle(event) {
      if (menu.hidden) return false;
      if (event.key === "Escape") {
        close();
        return true;
      }
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        if (found.length) pick(found[0]);
        return true;
      }
      return false;
    },
  };
}
