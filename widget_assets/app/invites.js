// Live Operator Chat, operator inbox: invitations (issue 18). An admin invites a teammate and
// copies the one-time link; the invitee opens it, chooses a password and is signed in.
//
// The link's token is in the URL's fragment, which browsers never send to a server, and
// leaves the address bar as soon as the page has read it.

import { api } from "./api.js";
import { $, copyButton, h, say } from "./dom.js";

const when = (t) => new Date(t * 1000).toLocaleString();

/** The Admin → Invitations screen: pending invitations, and a form for a new one. */
export async function showInvites(ctx, body) {
  let invites;
  try {
    [{ invites }] = await Promise.all([api("GET", "admin/invites"), ctx.directory]);
  } catch (error) {
    body.replaceChildren(h("p", { class: "form-error", role: "alert" }, error.message));
    return;
  }
  const status = h("p", { class: "admin__status", id: "admin-status", role: "status" });
  const again = async (message) => {
    await showInvites(ctx, body);
    say($("admin-status"), message);
  };
  const revoke = async (invite) => {
    if (!window.confirm(`Revoke the invitation of “${invite.name}”?`)) return;
    try {
      await api("DELETE", `admin/invites/${invite.id}`);
      await again(`Revoked the invitation of “${invite.name}”.`);
    } catch (error) {
      say(status, error.message);
    }
  };
  const now = Date.now() / 1000;
  const table = invites.length
    ? h("table", { class: "admin__table" },
      h("caption", { class: "visually-hidden" }, "Pending invitations"),
      h("thead", {}, h("tr", {}, ["Name", "Email", "Role", "Link"].map((t) =>
        h("th", { scope: "col" }, t)), h("th", { scope: "col" },
        h("span", { class: "visually-hidden" }, "Actions")))),
      h("tbody", {}, invites.map((i) => h("tr", { dataset: { id: i.id } },
        h("td", {}, i.name), h("td", {}, i.email), h("td", {}, i.is_admin ? "Admin" : "Operator"),
        h("td", {}, i.expires_at > now ? `Works until ${when(i.expires_at)}` : "Expired"),
        h("td", { class: "admin__actions" },
          h("button", { type: "button", class: "button button--quiet button--danger",
            "aria-label": `Revoke ${i.name}`, onclick: () => revoke(i) }, "Revoke"))))))
    : h("p", {}, "No pending invitations.");
  body.replaceChildren(
    h("h2", { class: "admin__title" }, "Invitations"),
    table,
    status,
    ctx.me.is_admin ? inviteForm(ctx) : h("p", { class: "admin__note" }, "Only admins invite."),
  );
}

function inviteForm(ctx) {
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const link = h("div", { class: "invite-link", id: "invite-link", hidden: true });
  const teams = ctx.teams.map((t) =>
    h("label", { class: "check" }, h("input", { type: "checkbox", value: t.id }), ` ${t.name}`));
  const input = (id, label, attrs) => h("div", { class: "field" },
    h("label", { class: "field__label", for: id }, label),
    h("input", { class: "field__input", id, required: true, ...attrs }));

  async function submit(event) {
    event.preventDefault();
    say(error, "");
    const fields = {
      name: $("invite-name").value,
      email: $("invite-email").value.trim(),
      is_admin: $("invite-role").value === "admin",
      team_ids: teams.map((t) => t.querySelector("input")).filter((i) => i.checked)
        .map((i) => Number(i.value)),
    };
    try {
      const { invite } = await api("POST", "admin/invites", fields);
      const url = new URL(invite.path, location.origin).href;
      await showInvites(ctx, $("admin-body"));
      const shown = $("invite-link");
      const text = h("input", { class: "field__input", id: "invite-url", readonly: true,
        value: url, "aria-label": `Invitation link for ${invite.name}` });
      shown.replaceChildren(
        h("p", {}, `Send this link to ${invite.name} (${invite.email}). It works once, until ${
          when(invite.expires_at)}, and is shown only now.`),
        h("div", { class: "copy-row" }, text, copyButton("Copy link", () => url)));
      shown.hidden = false;
      text.select();
    } catch (failure) {
      say(error, failure.message);
    }
  }

  return h("div", {},
    link,
    h("form", { class: "admin__form", id: "invite-form", novalidate: true, onsubmit: submit,
      "aria-labelledby": "invite-title" },
      h("h3", { id: "invite-title" }, "Invite a teammate"),
      input("invite-name", "Name", { maxlength: 100, autocomplete: "off" }),
      input("invite-email", "Email", { type: "email", maxlength: 254, autocomplete: "off" }),
      h("div", { class: "field" },
        h("label", { class: "field__label", for: "invite-role" }, "Role"),
        h("select", { class: "field__input", id: "invite-role" },
          h("option", { value: "operator" }, "Operator"), h("option", { value: "admin" }, "Admin"))),
      teams.length > 0 && h("fieldset", { class: "field" },
        h("legend", { class: "field__label" }, "Teams"), teams),
      error,
      h("div", { class: "admin__buttons" },
        h("button", { type: "submit", class: "button button--primary" }, "Create invitation link"))));
}

/** The invitee's page: who invited them where, and a password to choose. ``signedIn`` gets
 * the session, as a login's answer. */
export async function showInvitation(token, signedIn) {
  // Out of the address bar (and the history) before anything else happens.
  history.replaceState(null, "", "/app/#/invite");
  $("invite").hidden = false;
  const error = $("invite-error");
  try {
    const { invite } = await api("POST", "auth/invite", { token });
    $("invite-lead").textContent =
      `${invite.name}, you are invited to ${invite.account_name} as ${invite.email}.`;
    $("invite-form").hidden = false;
    $("invite-password").focus();
  } catch (failure) {
    $("invite-lead").textContent = "This invitation cannot be used.";
    say(error, failure.message);
    $("invite-signin").hidden = false;
    return;
  }
  $("invite-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const password = $("invite-password").value;
    if (password !== $("invite-confirm").value) {
      say(error, "The two passwords differ.");
      return;
    }
    say(error, "");
    $("invite-submit").disabled = true;
    try {
      const answer = await api("POST", "auth/invite/accept", { token, password });
      $("invite").hidden = true;
      history.replaceState(null, "", "/app/#/inbox");
      signedIn({ token: answer.token, expires_at: answer.expires_at, operator: answer.operator });
    } catch (failure) {
      say(error, failure.message);
    } finally {
      $("invite-submit").disabled = false;
    }
  });
}
