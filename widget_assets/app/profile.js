// Live Operator Chat, operator inbox: the operator's own profile (issue 18) — name, avatar,
// language and password. The server announces the change, so colleagues' inboxes follow.

import { api } from "./api.js";
import { $, h, say } from "./dom.js";

/** Renders the Profile screen of the signed-in operator. */
export function showProfile(ctx) {
  const me = ctx.me;
  const field = (id, label, attrs, hint) =>
    h("div", { class: "field" },
      h("label", { class: "field__label", for: id }, label),
      h("input", { class: "field__input", id, ...attrs, "aria-describedby": hint && `${id}-hint` }),
      hint && h("span", { class: "field__hint", id: `${id}-hint` }, hint));
  const error = h("p", { class: "form-error", id: "profile-error", role: "alert", hidden: true });
  const status = h("p", { class: "admin__status", id: "profile-status", role: "status" });

  async function submit(event) {
    event.preventDefault();
    say(error, "");
    status.textContent = "";
    const changes = {
      name: $("profile-name").value,
      avatar_url: $("profile-avatar").value.trim(),
      lang: $("profile-lang").value.trim() || "en",
    };
    const password = $("profile-password").value;
    if (password) {
      changes.password = password;
      changes.current_password = $("profile-current").value;
    }
    try {
      const answer = await api("PATCH", "operator/me", changes);
      // A new password signed out every other session; this one goes on with its new token.
      if (answer.token) ctx.renewSession(answer);
      ctx.setMe(answer.operator);
      $("profile-password").value = "";
      $("profile-current").value = "";
      status.textContent = password ? "Saved. Your password is changed." : "Saved.";
    } catch (failure) {
      say(error, failure.message);
    }
  }

  $("profile-body").replaceChildren(
    h("h2", { class: "admin__title" }, "Your profile"),
    h("form", { class: "admin__form", id: "profile-form", novalidate: true, onsubmit: submit,
      "aria-label": "Your profile" },
      field("profile-name", "Name", { value: me.name, maxlength: 100, required: true,
        autocomplete: "name" }, "Colleagues and customers see this name."),
      field("profile-avatar", "Avatar URL", { type: "url", value: me.avatar_url || "",
        maxlength: 2048, placeholder: "https://…" }, "A link to your picture (http or https)."),
      field("profile-lang", "Language", { value: me.lang || "en", maxlength: 35,
        placeholder: "en" }, "Customers' messages are translated into it (e.g. en, de, pt-BR)."),
      h("fieldset", { class: "field" },
        h("legend", { class: "field__label" }, "Change password"),
        field("profile-current", "Current password", { type: "password", maxlength: 256,
          autocomplete: "current-password" }),
        field("profile-password", "New password (at least 8 characters)", { type: "password",
          maxlength: 256, autocomplete: "new-password" }, "Leave empty to keep your password.")),
      error,
      h("div", { class: "admin__buttons" },
        h("button", { type: "submit", class: "button button--primary" }, "Save profile"))),
    status,
  );
}
