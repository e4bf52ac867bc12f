// Live Operator Chat, operator inbox: the contact behind the open conversation — who they are,
// their conversations on every channel, and other contacts that may be the same person, which
// an operator can merge (issue 14).

import { api } from "./api.js";
import { $, channelTag, h, say, statusTag, timeTag } from "./dom.js";

const KIND_LABELS = { phone: "Phone", email: "Email", session: "Web session", bot: "Bot user" };

function identityItem(i) {
  return h(
    "li",
    { class: "identity", dataset: { kind: i.kind, verified: String(i.verified) } },
    h("span", { class: "identity__kind" }, KIND_LABELS[i.kind] || i.kind),
    " ",
    h("span", { class: "identity__value" }, i.value),
    " ",
    h("span", { class: "identity__proof" }, i.verified ? "verified" : "typed"),
  );
}

const label = (contact) => contact.name || `Contact ${contact.id}`;

/** The panel: ``show(contact, openId)`` loads the contact's view; ``clear()`` empties it;
 * ``merged(event)`` follows a merge announced on the stream. */
export function createContactPanel() {
  const panel = $("contact");
  let shown = null; // the contact id on display
  let openId = null; // the conversation the inbox has open

  function clear() {
    shown = null;
    openId = null;
    panel.hidden = true;
  }

  /** Loads ``contact`` (as the conversation carries it: id, name, identities). Never rejects:
   * a failure says so in the panel. */
  async function show(contact, conversationId) {
    openId = conversationId;
    if (!contact) {
      clear();
      return;
    }
    shown = contact.id;
    try {
      const answer = await api("GET", `operator/contacts/${contact.id}`);
      if (shown === contact.id) render(answer.contact);
    } catch (error) {
      if (shown === contact.id) say($("contact-error"), error.message);
    }
  }

  function render(view) {
    panel.hidden = false;
    say($("contact-error"), "");
    $("contact-name").textContent = label(view);
    $("contact-identities").replaceChildren(...view.identities.map(identityItem));
    const others = view.conversations.filter((c) => c.id !== openId);
    $("contact-conversations").replaceChildren(
      ...others.map((c) =>
        h(
          "li",
          { class: "contact-convo" },
          h(
            "a",
            { href: `#/inbox/${encodeURIComponent(c.id)}`, dataset: { id: c.id } },
            channelTag(c.channel),
            " ",
            h("span", { class: "contact-convo__preview" }, c.preview || c.id),
          ),
          " ",
          statusTag(c.status),
          " ",
          timeTag(c.last_activity),
        ),
      ),
    );
    $("contact-conversations-empty").hidden = others.length > 0;
    $("contact-matches").replaceChildren(
      ...view.possible_matches.map((m) =>
        h(
          "li",
          { class: "match", dataset: { id: String(m.id) } },
          h("span", { class: "match__name" }, label(m)),
          h("ul", { class: "identities" }, m.identities.map(identityItem)),
          h(
            "button",
            {
              class: "button match__merge",
              type: "button",
              onclick: () => merge(view, m).catch((e) => say($("contact-error"), e.message)),
            },
            "Merge",
          ),
        ),
      ),
    );
    $("contact-matches-section").hidden = view.possible_matches.length === 0;
  }

  async function merge(into, from) {
    const question =
      `Merge ${label(from)} into ${label(into)}? Their conversations and details ` +
      "move to this contact; this cannot be undone.";
    if (!window.confirm(question)) return;
    const answer = await api("POST", `operator/contacts/${into.id}/merge`, { from_id: from.id });
    if (shown === into.id) render(answer.contact);
    say($("contact-status"), `Merged ${label(from)}.`);
  }

  /** Another operator (or this one) merged contacts: a panel showing either reloads. */
  function merged(data) {
    if (shown === data.contact_id || shown === data.from_id) {
      show({ id: data.contact_id }, openId);
    }
  }

  return { show, clear, merged };
}
