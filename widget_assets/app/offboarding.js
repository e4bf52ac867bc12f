// Live Operator Chat, operator inbox: an operator who leaves (issue 18). Deactivating keeps
// their name on what they wrote and asks where their open conversations go — back to the
// queue or to a named colleague — before anything changes.

import { api } from "./api.js";
import { h } from "./dom.js";

/** Asks, then deactivates ``operator``. Resolves to what to tell the admin, or null when
 * they cancel. */
export function deactivateOperator(operator, ctx) {
  const colleagues = [...ctx.operators.values()].filter(
    (o) => o.id !== operator.id && o.active !== false,
  );
  return new Promise((resolve) => {
    const target = h("select", { class: "field__input", id: "deactivate-to" },
      h("option", { value: "" }, "Back to the queue"),
      colleagues.map((o) => h("option", { value: o.id }, `To ${o.name}`)));
    const error = h("p", { class: "form-error", role: "alert", hidden: true });
    const dialog = h("dialog", { class: "dialog", "aria-labelledby": "deactivate-title" });
    let outcome = null;

    async function submit(event) {
      event.preventDefault();
      const to = Number(target.value) || null;
      try {
        const answer = await api("POST", `admin/operators/${operator.id}/deactivate`,
          to ? { to_operator_id: to } : {});
        const where = to ? `to ${ctx.operators.get(to)?.name}` : "back to the queue";
        const count = answer.moved === 1 ? "1 open conversation" : `${answer.moved} open conversations`;
        outcome = `Deactivated “${operator.name}”; ${count} went ${where}.`;
        dialog.close();
      } catch (failure) {
        error.textContent = failure.message;
        error.hidden = false;
      }
    }

    dialog.append(
      h("form", { class: "dialog__form", onsubmit: submit },
        h("h3", { id: "deactivate-title" }, `Deactivate ${operator.name}?`),
        h("p", {}, "They can no longer sign in. Their name stays on the messages they wrote."),
        h("div", { class: "field" },
          h("label", { class: "field__label", for: "deactivate-to" }, "Their open conversations"),
          target),
        error,
        h("div", { class: "admin__buttons" },
          h("button", { type: "submit", class: "button button--danger" }, "Deactivate"),
          h("button", { type: "button", class: "button button--quiet",
            onclick: () => dialog.close() }, "Cancel"))),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(outcome);
    });
    document.body.append(dialog);
    dialog.showModal();
    target.focus();
  });
}

export async function reactivateOperator(operator) {
  await api("PATCH", `admin/operators/${operator.id}`, { active: true });
  return `Reactivated “${operator.name}”: they can sign in again.`;
}
