// Live Operator Chat, operator inbox: the admin screens — operators, teams, canned responses,
// sites, channels and webhooks — all one table and one form, described per resource.
//
// Every operator may look; only admins may change (the server enforces it, 403 otherwise).

import { api } from "./api.js";
import { reenableWebhook, showDeliveries } from "./deliveries.js";
import { $, h, say } from "./dom.js";
import { showInstall } from "./install.js";
import { showInvites } from "./invites.js";
import { deactivateOperator, reactivateOperator } from "./offboarding.js";

const teamName = (ctx, id) => ctx.teams.find((t) => t.id === id)?.name || "None";
const operatorNames = (ctx, ids) =>
  ids.map((id) => ctx.operators.get(id)?.name || `#${id}`).join(", ") || "No members";

const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "never");
/** A channel's health line: its last message in and out, and its last failed send. */
const health = (c) => {
  const { last_inbound: inbound, last_outbound: outbound, last_error: error } = c.health;
  const line = `In: ${when(inbound)} · Out: ${when(outbound)}`;
  return error ? `${line} · Last error (${when(c.health.last_error_at)}): ${error}` : line;
};

/** Sends a test SMS from ``channel`` to a number the admin types; says how it went. */
async function testSms(channel) {
  const to = window.prompt(`Send a test SMS from “${channel.name}” to (E.164, e.g. +15550100100):`);
  if (!to) return null;
  await api("POST", `admin/channels/${channel.id}/test`, { to: to.trim() });
  return `Test message sent from “${channel.name}” to ${to.trim()}.`;
}

const WEBHOOK_EVENTS = [
  ["conversation.created", "Conversation created"],
  ["conversation.updated", "Conversation updated"],
  ["conversation.status_changed", "Status changed"],
  ["message.created", "Message created"],
  ["conversation.control_changed", "Control changed (a human took over, handed back, closed)"],
];

/** Logs in to an email channel's SMTP server and its mailbox; says how each answered. */
async function testEmail(channel) {
  const result = await api("POST", `admin/channels/${channel.id}/test`, {});
  return `Tested “${channel.name}”: SMTP ${result.smtp}, IMAP ${result.imap}.`;
}

/** What to paste into the provider's settings. */
const webhookLines = (c) => (c.kind === "email"
  ? `Raw MIME: ${c.webhooks.mime}\nMailgun: ${c.webhooks.mailgun}`
  : `Messages: ${c.webhooks.sms}\nStatus: ${c.webhooks.status}`);

/** A team's way of handing out new conversations. */
const assignment = (t) => {
  if (!t.auto_assign) return "First to reply";
  return `Round robin${t.assign_limit ? `, up to ${t.assign_limit} each` : ""}`;
};

const cannedFields = [
  { name: "name", label: "Name", required: true, maxlength: 100 },
  { name: "tag", label: "Tag", maxlength: 50 },
  { name: "message", label: "Message", required: true, multiline: true,
    hint: "Macros: {fname} {lname} {email} {phone} {operator}" },
];

/** A site's business hours as the form shows them: one “mon 09:00-17:00” a line. */
const hoursText = (hours) => hours.map((i) => `${i.day} ${i.open}-${i.close}`).join("\n");

/** The form's lines as the API's intervals; a line of another shape goes as its day, for
 * the server to name in its answer. */
const parseHours = (text) => text.split("\n").map((line) => line.trim()).filter(Boolean)
  .map((line) => {
    const [, day, open, close] =
      line.match(/^(\S+)\s+(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})$/) || [null, line, "", ""];
    return { day: day.toLowerCase(), open: open.padStart(5, "0"), close: close.padStart(5, "0") };
  });

/** Per resource: its API path, its list key, the columns shown, the form's fields, and any
 * row actions beyond Edit and Delete (``when`` says for which rows; ``run`` gets the row and
 * the inbox's context and resolves to what to tell the admin, or null). A field's ``create`` marks it required only when
 * creating (a password or a token kept when editing); its ``kinds`` shows it only for those
 * values of the form's ``kind`` field; an ``editHint`` may be a function of the item; ``parse``
 * turns the field's text into what is sent. A resource's ``path`` and ``list`` default to
 * ``admin/{name}`` and its name; ``everyone`` lets every operator change it, not only admins. */
const RESOURCES = {
  operators: {
    title: "Operators",
    one: "operator",
    columns: [
      ["Name", (o) => o.name],
      ["Email", (o) => o.email],
      ["Role", (o) => (o.is_admin ? "Admin" : "Operator")],
      ["Language", (o) => o.lang],
      ["Status", (o) => (o.active === false ? "Deactivated" : "Active")],
    ],
    fields: () => [
      { name: "name", label: "Name", required: true, maxlength: 100 },
      { name: "email", label: "Email", type: "email", required: true, maxlength: 254 },
      { name: "password", label: "Password (at least 8 characters)", type: "password",
        create: true, editHint: "Leave empty to keep the current password.", maxlength: 256 },
      { name: "role", label: "Role", options: [["operator", "Operator"], ["admin", "Admin"]],
        value: (o) => o.role },
      { name: "lang", label: "Language", placeholder: "en", maxlength: 35 },
    ],
    actions: [
      { label: "Deactivate", when: (o) => o.active !== false, run: deactivateOperator },
      { label: "Reactivate", when: (o) => o.active === false, run: reactivateOperator },
    ],
  },
  teams: {
    title: "Teams",
    one: "team",
    columns: [
      ["Name", (t) => t.name],
      ["Members", (t, ctx) => operatorNames(ctx, t.member_ids)],
      ["Assignment", assignment],
    ],
    fields: (ctx) => [
      { name: "name", label: "Name", required: true, maxlength: 100 },
      { name: "member_ids", label: "Members", members: [...ctx.operators.values()] },
      { name: "auto_assign", label: "New conversations", boolean: true,
        options: [["false", "First operator to reply claims them"],
          ["true", "Assign round robin to online members"]],
        value: (t) => String(t.auto_assign) },
      { name: "assign_limit", label: "Open conversations per operator (round robin)",
        type: "number", number: true, min: 0, max: 1000, placeholder: "0",
        hint: "Members who own this many open or active conversations are passed over; 0 for no limit." },
    ],
  },
  mine: {
    title: "My responses",
    one: "canned response",
    // An operator's own (issue 18): only they see them, any operator may keep some.
    path: "operator/canned",
    list: "canned",
    everyone: true,
    note: "Only you see these; they are marked “Mine” where you pick a canned response.",
    columns: [
      ["Name", (c) => c.name],
      ["Tag", (c) => c.tag],
      ["Message", (c) => c.message],
    ],
    fields: () => cannedFields,
  },
  canned: {
    title: "Canned responses",
    one: "canned response",
    columns: [
      ["Name", (c) => c.name],
      ["Tag", (c) => c.tag],
      ["Message", (c) => c.message],
    ],
    fields: () => cannedFields,
  },
  sites: {
    title: "Sites",
    one: "site",
    columns: [
      ["Id", (s) => String(s.id)],
      ["Name", (s) => s.name],
      ["Color", (s) => s.color],
      ["Position", (s) => s.position],
      ["Team", (s, ctx) => teamName(ctx, s.team_id)],
      ["Hours", (s) => (s.business_hours.length
        ? `${hoursText(s.business_hours).replaceAll("\n", ", ")} (${s.time_zone})`
        : "Always open")],
    ],
    fields: (ctx) => [
      { name: "name", label: "Name", required: true, maxlength: 100 },
      { name: "color", label: "Widget color", type: "color", value: (s) => s.color },
      { name: "position", label: "Widget position", options: [["right", "Right"], ["left", "Left"]],
        value: (s) => s.position },
      { name: "greeting", label: "Greeting", multiline: true, maxlength: 300, clearable: true },
      { name: "team_id", label: "Team for new conversations", number: true,
        options: [["0", "None"], ...ctx.teams.map((t) => [String(t.id), t.name])],
        value: (s) => String(s.team_id || 0) },
      // Business hours and the away message belong to an existing site: edited, not created.
      { name: "time_zone", label: "Time zone", editOnly: true, maxlength: 64,
        placeholder: "Europe/Berlin", hint: "The zone the business hours are in (IANA name)." },
      { name: "business_hours", label: "Business hours", multiline: true, editOnly: true,
        value: (s) => hoursText(s.business_hours), parse: parseHours,
        hint: "One interval a line, like “mon 09:00-17:00”. Empty: always open." },
      { name: "away_message", label: "Away message", multiline: true, editOnly: true,
        maxlength: 500, clearable: true,
        hint: "Shown in the widget when nobody is online or outside business hours." },
      { name: "reply_time", label: "Expected reply time", editOnly: true, maxlength: 120,
        placeholder: "within a few hours", clearable: true },
    ],
  },
  channels: {
    title: "Channels",
    one: "channel",
    columns: [
      ["Name", (c) => c.name],
      ["Kind", (c) => c.kind.toUpperCase()],
      ["From", (c) => (c.kind === "email" ? c.address : c.from)],
      ["Webhook URLs", webhookLines],
      ["Health", health],
    ],
    fields: () => [
      { name: "kind", label: "Kind", options: [["sms", "SMS (Twilio)"], ["email", "Email"]],
        createOnly: true },
      { name: "name", label: "Name", required: true, maxlength: 100 },
      { name: "account_sid", label: "Account SID", required: true, maxlength: 34,
        placeholder: "AC…", kinds: ["sms"] },
      { name: "auth_token", label: "Auth token", type: "password", create: true,
        value: () => "", editHint: "Leave empty to keep the current token; it is never shown.",
        maxlength: 256, kinds: ["sms"] },
      { name: "from", label: "From number or messaging service", required: true,
        placeholder: "+15550100100 or MG…", maxlength: 34, kinds: ["sms"] },
      { name: "address", label: "Support address", type: "email", required: true,
        placeholder: "support@example.com", maxlength: 254, kinds: ["email"] },
      // A URL's password is a secret: the edit form starts empty, and empty keeps it.
      { name: "smtp_url", label: "SMTP URL", create: true, value: () => "", maxlength: 500,
        hint: "smtp[s]://user:password@host[:port][?starttls=1]", kinds: ["email"],
        editHint: (c) => `Now ${c.smtp_url}. Leave empty to keep it; the password is never shown.` },
      { name: "imap_url", label: "IMAP URL (optional)", value: () => "", maxlength: 500,
        hint: "imap[s]://user:password@host[:port]/INBOX", kinds: ["email"],
        editHint: (c) => `Now ${c.imap_url || "not set"}. Leave empty to keep it; the password is never shown.` },
      { name: "imap_backfill_days", label: "Import mail from the last days (IMAP)", type: "number",
        placeholder: "0", kinds: ["email"],
        hint: "On the first connection; 0 imports only mail from then on." },
      { name: "public_url", label: "Public URL of this server", type: "url", required: true,
        hint: "The base URL the provider calls; the webhook URLs are built from it.",
        placeholder: "https://chat.example.com", maxlength: 500 },
      { name: "api_url", label: "Provider API URL", type: "url", maxlength: 500,
        placeholder: "https://api.twilio.com", kinds: ["sms"] },
      { name: "mailgun_signing_key", label: "Mailgun signing key (optional)", type: "password",
        value: () => "", maxlength: 256, kinds: ["email"],
        editHint: "Leave empty to keep the current key; it is never shown." },
      { name: "ask_rating", label: "Rating question", boolean: true, kinds: ["sms", "email"],
        options: [["false", "Off"], ["true", "Ask when a conversation is resolved"]],
        value: (c) => String(Boolean(c.ask_rating)),
        hint: "The customer gets “How did we do?” and answers 1 to 5. Each question by SMS is a text you pay for." },
    ],
    actions: [
      { label: "Send test", when: (c) => c.kind === "sms", run: testSms },
      { label: "Test", when: (c) => c.kind === "email", run: testEmail },
    ],
  },
  webhooks: {
    title: "Webhooks",
    one: "webhook",
    // A webhook has no name: its URL names it in buttons and messages.
    name: (w) => w.url,
    columns: [
      ["URL", (w) => w.url],
      ["Events", (w) => w.events.join(", ")],
      ["Status", (w) => (w.enabled ? "Enabled" : `Disabled: ${w.disabled_reason}`)],
    ],
    fields: () => [
      { name: "url", label: "Endpoint URL", type: "url", required: true, maxlength: 500,
        placeholder: "https://crm.example.com/hooks/liveop" },
      { name: "events", label: "Events", choices: WEBHOOK_EVENTS },
      { name: "enabled", label: "Status", boolean: true, editOnly: true,
        options: [["true", "Enabled"], ["false", "Disabled"]], value: (w) => String(w.enabled) },
    ],
    actions: [
      { label: "Deliveries", run: showDeliveries },
      { label: "Re-enable", when: (w) => !w.enabled, run: reenableWebhook },
    ],
    // The signing secret is in the create answer only: shown once, here.
    created: (answer) => `Added “${answer.webhook.url}”. Its signing secret, shown only now: ${
      answer.webhook.secret}`,
  },
};

// Admin screens that are no table of one resource.
const SCREENS = { invites: showInvites, install: showInstall };

let shown = null; // the resource on screen

/** Renders the ``name`` screen into the admin section. */
export async function showAdmin(ctx, name) {
  const resource = RESOURCES[name] || SCREENS[name] ? name : "operators";
  shown = resource;
  for (const tab of document.querySelectorAll(".admin__tab")) {
    if (tab.dataset.resource === resource) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  const body = $("admin-body");
  body.replaceChildren(h("p", {}, "Loading…"));
  if (SCREENS[resource]) {
    await SCREENS[resource](ctx, body);
    return;
  }
  let items;
  try {
    // Cells name operators and teams from the directory: wait for its first load.
    const spec = RESOURCES[resource];
    const [answer] = await Promise.all([api("GET", pathOf(resource)), ctx.directory]);
    items = answer[spec.list || resource];
  } catch (error) {
    body.replaceChildren(h("p", { class: "form-error", role: "alert" }, error.message));
    return;
  }
  if (shown === resource) render(ctx, resource, items);
}

const nameOf = (spec, item) => (spec.name ? spec.name(item) : item.name);
const pathOf = (resource) => RESOURCES[resource].path || `admin/${resource}`;

function render(ctx, resource, items, editing = null) {
  const spec = RESOURCES[resource];
  const admin = ctx.me.is_admin || spec.everyone;
  const rerun = async (message) => {
    await ctx.refreshDirectory();
    await showAdmin(ctx, resource);
    say($("admin-status"), message);
  };
  const remove = async (item) => {
    if (!window.confirm(`Delete the ${spec.one} “${nameOf(spec, item)}”?`)) return;
    try {
      await api("DELETE", `${pathOf(resource)}/${item.id}`);
      await rerun(`Deleted “${nameOf(spec, item)}”.`);
    } catch (error) {
      say($("admin-status"), error.message);
    }
  };
  const act = async (action, item) => {
    try {
      const message = await action.run(item, ctx);
      if (message) await rerun(message);
    } catch (error) {
      // The outcome may be on the item now (a channel's health line): show it with the reason.
      await showAdmin(ctx, resource);
      say($("admin-status"), error.message);
    }
  };
  const table = h("table", { class: "admin__table" },
    h("caption", { class: "visually-hidden" }, spec.title),
    h("thead", {}, h("tr", {},
      spec.columns.map(([title]) => h("th", { scope: "col" }, title)),
      admin && h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
    h("tbody", {}, items.map((item) => h("tr", { dataset: { id: item.id } },
      spec.columns.map(([, cell]) => h("td", {}, cell(item, ctx) || "")),
      admin && h("td", { class: "admin__actions" },
        h("button", { type: "button", class: "button button--quiet",
          "aria-label": `Edit ${nameOf(spec, item)}`, onclick: () => render(ctx, resource, items, item) },
          "Edit"),
        (spec.actions || []).filter((a) => !a.when || a.when(item)).map((action) =>
          h("button", { type: "button", class: "button button--quiet",
            "aria-label": `${action.label} ${nameOf(spec, item)}`, onclick: () => act(action, item) },
            action.label)),
        h("button", { type: "button", class: "button button--quiet button--danger",
          "aria-label": `Delete ${nameOf(spec, item)}`, onclick: () => remove(item) }, "Delete"))))),
  );
  $("admin-body").replaceChildren(
    h("h2", { class: "admin__title" }, spec.title),
    // replaceChildren, unlike h(), would write a missing note as "undefined".
    spec.note ? h("p", { class: "admin__note" }, spec.note) : "",
    table,
    h("p", { class: "admin__status", id: "admin-status", role: "status" }),
    admin
      ? form(ctx, resource, spec, editing, rerun)
      : h("p", { class: "admin__note" }, "Only admins can change these."),
  );
  if (editing) $("admin-form").querySelector("input, textarea, select").focus();
}

function form(ctx, resource, spec, editing, rerun) {
  const fields = spec.fields(ctx);
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const inputs = new Map();
  const clearable = new Set(); // fields whose emptied text is sent, to clear it
  const kindFields = [];
  const shownFields = fields.filter((f) => (editing ? !f.createOnly : !f.editOnly));
  const controls = shownFields.map((f) => {
    const id = `admin-${f.name}`;
    const current = editing ? (f.value ? f.value(editing) : editing[f.name]) : undefined;
    if (f.choices) {
      const boxes = f.choices.map(([value, label]) =>
        h("label", { class: "check" },
          h("input", { type: "checkbox", value,
            checked: editing ? editing[f.name].includes(value) : false }),
          ` ${label}`));
      inputs.set(f.name, () =>
        boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value));
      const legend = h("legend", { class: "field__label" }, f.label);
      return h("fieldset", { class: "field" }, legend, boxes);
    }
    if (f.members) {
      const boxes = f.members.map((o) =>
        h("label", { class: "check" },
          h("input", { type: "checkbox", value: o.id,
            checked: editing ? editing.member_ids.includes(o.id) : false }),
          ` ${o.name}`));
      const checked = () => boxes.map((b) => b.querySelector("input")).filter((i) => i.checked);
      inputs.set(f.name, () => checked().map((i) => Number(i.value)));
      const legend = h("legend", { class: "field__label" }, f.label);
      return h("fieldset", { class: "field" }, legend, boxes);
    }
    const editHint = typeof f.editHint === "function" && editing ? f.editHint(editing) : f.editHint;
    const hint = (editing && editHint) || f.hint;
    const attrs = { class: "field__input", id, name: f.name, maxlength: f.maxlength,
      min: f.min, max: f.max,
      placeholder: f.placeholder, required: f.required || (f.create && !editing),
      "aria-describedby": hint && `${id}-hint` };
    let input;
    if (f.options) {
      input = h("select", attrs, f.options.map(([value, label]) => h("option", { value }, label)));
    } else if (f.multiline) {
      input = h("textarea", { ...attrs, rows: 3 });
    } else {
      input = h("input", { ...attrs, type: f.type || "text" });
    }
    if (current !== undefined && current !== null) input.value = current;
    const box = h("div", { class: "field" },
      h("label", { class: "field__label", for: id }, f.label), input,
      hint && h("span", { class: "field__hint", id: `${id}-hint` }, hint));
    // Another kind's field is hidden and left out of what is sent.
    if (f.clearable) clearable.add(f.name);
    inputs.set(f.name, () => {
      if (box.hidden) return "";
      if (f.parse) return f.parse(input.value);
      return f.number ? Number(input.value) : f.boolean ? input.value === "true" : input.value;
    });
    if (f.kinds) kindFields.push([f, box, input]);
    return box;
  });
  const kindSelect = controls.find((c) => c.querySelector?.("select[name=kind]"))
    ?.querySelector("select");
  const showKind = () => {
    const kind = editing ? editing.kind : kindSelect?.value;
    for (const [f, box, input] of kindFields) {
      box.hidden = !f.kinds.includes(kind);
      input.required = !box.hidden && (f.required || (f.create && !editing));
    }
  };
  kindSelect?.addEventListener("change", showKind);
  showKind();

  async function submit(event) {
    event.preventDefault();
    const values = {};
    for (const [name, read] of inputs) {
      const value = read();
      // Empty optional fields are left out: on create the server's default, on edit unchanged;
      // but a text the admin emptied where empty means "none" (an away message) is cleared.
      if (value !== "" && !(name === "team_id" && value === 0 && !editing)) values[name] = value;
      else if (value === "" && editing?.[name] && clearable.has(name)) values[name] = "";
    }
    const named = nameOf(spec, values);
    try {
      if (editing) {
        await api("PATCH", `${pathOf(resource)}/${editing.id}`, values);
        await rerun(`Saved “${named}”.`);
      } else {
        const answer = await api("POST", pathOf(resource), values);
        await rerun(spec.created ? spec.created(answer) : `Added “${named}”.`);
      }
    } catch (failure) {
      say(error, failure.message);
    }
  }

  const verb = editing ? `Edit ${spec.one}` : `Add ${spec.one}`;
  return h("form", { class: "admin__form", id: "admin-form", novalidate: true, onsubmit: submit,
    "aria-labelledby": "admin-form-title" },
    h("h3", { id: "admin-form-title" }, editing ? `${verb} “${nameOf(spec, editing)}”` : verb),
    controls,
    error,
    h("div", { class: "admin__buttons" },
      h("button", { type: "submit", class: "button button--primary" }, editing ? "Save" : verb),
      editing && h("button", { type: "button", class: "button button--quiet",
        onclick: () => showAdmin(ctx, resource) }, "Cancel")));
}
