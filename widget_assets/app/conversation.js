// Live Operator Chat, operator inbox: the open conversation — its history, the composer
// (replies, notes, canned responses, images), its controls and the visitor's details.

import { api } from "./api.js";
import { createContactPanel } from "./contact.js";
import { createEmojiPicker } from "./emoji.js";
import { originalLink } from "./original.js";
import { createSlashPicker } from "./slash.js";
import {
  $,
  CHANNEL_LABELS,
  STATUS_LABELS,
  channelTag,
  contactName,
  fullTime,
  h,
  say,
  statusTag,
  timeTag,
} from "./dom.js";
// The chat window's own rule for turning a message into text nodes and safe links.
import { appendText } from "../assets/chat/dom.js";

const HISTORY_PAGE = 50;
// The server keeps an operator's typing indicator 5 s; one POST per 2 s keeps it steady.
const TYPING_THROTTLE_MS = 2000;
const NEAR_BOTTOM_PX = 120;
const READ_DELAY_MS = 300;
const MACRO = /\{(fname|lname|email|phone|operator)\}/g;

/** The canned response as the server will send it (server/conversations.py expand_macros):
 * one pass, so a value that looks like a macro stays as it is. */
function fillMacros(template, contact, operatorName) {
  return template.replace(MACRO, (_, name) =>
    name === "operator" ? operatorName : name === "fname" ? firstName(contact) : contact[name] || "",
  );
}

/** A customer's mail's files or an MMS's further pictures (operators only): pictures the
 * image store kept shown inline as thumbnails that open full size,
 * any other file a download link, and a file that was not kept named with why. */
function attachmentList(attachments) {
  return h("ul", { class: "msg__files", "aria-label": "Attachments" }, attachments.map((a) => {
    const size = a.size >= 1024 ? `${Math.round(a.size / 1024)} KB` : `${a.size} bytes`;
    if (!a.url || !/^(https?:\/\/|\/uploads\/)/i.test(a.url)) {
      return h("li", { class: "msg__file" }, `${a.name} (${size}, not kept: too large)`);
    }
    // The image store names what it kept by the format it decoded: only those show inline.
    if (/\.(png|jpg|gif|webp)$/.test(a.url)) {
      return h("li", { class: "msg__file" },
        h("a", { class: "msg__image", href: a.url, target: "_blank", rel: "noopener" },
          h("img", { src: a.url, alt: a.name, loading: "lazy" })));
    }
    return h("li", { class: "msg__file" },
      h("a", { href: a.url, download: a.name, rel: "noopener" }, a.name), ` (${size})`);
  }));
}

/** How many pictures a message shows: its image and its attachments. */
function pictures(m) {
  return (m.image_url ? 1 : 0) + (m.attachments?.length || 0);
}

/** As server/conversations.py first_name: a whole name typed in the one name field greets
 * with its first word. */
function firstName(contact) {
  if (contact.lname) return contact.fname;
  return (contact.fname || "").split(/\s+/).filter(Boolean)[0] || "";
}

export function createConversation(ctx) {
  const thread = $("thread");
  const log = $("messages");
  const text = $("composer-text");
  let openId = null;
  let current = null; // the conversation, once loaded
  let messages = new Map(); // seq -> message
  let rows = new Map(); // seq -> <li>
  let lines = new Set(); // the timeline's lines shown, as JSON (a load and the stream repeat them)
  let lastTypingPost = 0;
  let readTimer = 0;
  let chosenCanned = null;
  // The customer opted out of SMS on the conversation's channel: replies cannot reach them.
  let optedOut = false;
  let chosenImage = null; // a File the operator picked, shown until sent or cancelled

  const contactPanel = createContactPanel();
  const mode = () => document.querySelector('input[name="mode"]:checked').value;
  const fail = (error) => say($("convo-error"), error.message);

  // -- opening and loading ---------------------------------------------------------------------

  function open(id) {
    if (id === openId) {
      markRead(); // back from the admin screens
      return;
    }
    openId = id;
    current = null;
    optedOut = false;
    setMode();
    messages = new Map();
    rows = new Map();
    lines = new Set();
    log.replaceChildren();
    text.value = "";
    slash.close();
    hideCanned();
    hideImage();
    say($("convo-error"), "");
    say($("composer-status"), "");
    $("convo-empty").hidden = true;
    $("convo").hidden = false;
    $("details").hidden = true;
    contactPanel.clear();
    $("convo-name").textContent = "Loading…";
    if (ctx.live()) ctx.guarded(load);
  }

  function close() {
    openId = null;
    current = null;
    $("convo").hidden = true;
    $("details").hidden = true;
    $("convo-empty").hidden = false;
  }

  /** The newest page of history (marking it read) and the conversation as it is now. Never
   * rejects: a conversation that cannot be shown says so in its pane. */
  async function load() {
    if (!openId) return;
    const id = openId;
    let answer;
    try {
      answer = await api("GET", `operator/conversation/${encodeURIComponent(id)}`, {
        limit: HISTORY_PAGE,
      });
    } catch (error) {
      if (id !== openId) return;
      if (!current) $("convo-name").textContent = "Not available";
      fail(error);
      return;
    }
    if (id !== openId) return;
    const oldest = answer.messages[0];
    if (oldest && messages.size && oldest.seq > Math.max(...messages.keys()) + 1) {
      // More was written meanwhile (a "reset") than one page: what is shown would have a hole.
      messages = new Map();
      rows = new Map();
      lines = new Set();
      log.replaceChildren();
    }
    update(answer.conversation);
    merge(answer.messages);
    timeline(id, answer.timeline);
    thread.scrollTop = thread.scrollHeight;
    contactPanel.show(answer.contact, id);
  }

  async function loadOlder() {
    const oldest = Math.min(...messages.keys());
    const id = openId;
    const answer = await api("GET", `operator/conversation/${encodeURIComponent(id)}`, {
      before_seq: oldest,
      limit: HISTORY_PAGE,
    });
    if (id !== openId) return;
    const height = thread.scrollHeight;
    merge(answer.messages);
    timeline(id, answer.timeline);
    thread.scrollTop += thread.scrollHeight - height; // keep what was on screen in place
  }

  function merge(list) {
    for (const m of list) add(m, { scroll: false });
    $("older").hidden = !messages.size || Math.min(...messages.keys()) <= 1;
  }

  // -- the history -------------------------------------------------------------------------------

  /** Adds (or, the same seq again, replaces) one message, in seq order. */
  function add(m, { scroll = true, redraw = false } = {}) {
    if (m.conversation_id !== openId) return;
    // The same message from a load and from the stream: drawn once, announced once.
    if (!redraw && JSON.stringify(messages.get(m.seq)) === JSON.stringify(m)) return;
    const stick = thread.scrollHeight - thread.scrollTop - thread.clientHeight < NEAR_BOTTOM_PX;
    messages.set(m.seq, m);
    const row = messageRow(m);
    const old = rows.get(m.seq);
    rows.set(m.seq, row);
    if (old) {
      row.dataset.order = String(m.seq);
      old.replaceWith(row);
    } else {
      place(row, m.seq);
    }
    if (scroll && (stick || m.operator_id === ctx.me.id)) thread.scrollTop = thread.scrollHeight;
    if (m.sender === "visitor" && scroll) markRead();
    showSeen();
  }

  /** Puts ``row`` in the thread by its ``order``: a message's seq, a line's seq after the
   * message it followed; a line goes after those that came before it. */
  function place(row, order) {
    row.dataset.order = String(order);
    const next = [...log.children].find((li) => Number(li.dataset.order) > order);
    log.insertBefore(row, next || null);
  }

  /** The timeline's lines (server/timeline.py): what happened, between the messages. */
  function timeline(id, list) {
    if (id !== openId || !list) return;
    const stick = thread.scrollHeight - thread.scrollTop - thread.clientHeight < NEAR_BOTTOM_PX;
    for (const line of list) {
      const key = JSON.stringify(line);
      if (lines.has(key)) continue;
      lines.add(key);
      const row = h("li", { class: "line", dataset: { kind: line.kind } },
        h("p", { class: "line__text" }, line.text, " · ", timeTag(line.at)));
      if (line.note) row.append(h("p", { class: "line__note" }, `Hand-over note: ${line.note}`));
      place(row, line.after_seq + 0.5);
    }
    if (stick) thread.scrollTop = thread.scrollHeight;
  }

  function senderName(m) {
    if (m.sender === "visitor") return current ? contactName(current) : "Visitor";
    if (m.sender === "bot") return "Bot";
    if (m.sender === "system") return "System";
    const name = m.operator_name || "Operator";
    return m.operator_id === ctx.me.id ? `${name} (you)` : name;
  }

  function messageRow(m) {
    const kind = m.private ? "note" : m.sender;
    const row = h("li", {
      class: `msg msg--${kind}`,
      dataset: { seq: m.seq, sender: m.sender, private: m.private ? "true" : "false" },
    });
    // Each operator keeps one hue, so who said what reads at a glance in long threads.
    if (m.sender === "operator") row.style.setProperty("--hue", String((m.operator_id * 67) % 360));
    row.append(
      h("div", { class: "msg__head" },
        h("span", { class: "msg__who" },
          m.private ? `Private note · ${senderName(m)}` : senderName(m)),
        timeTag(m.created)),
    );
    if (m.content) {
      const text = h("p", { class: "msg__text" });
      appendText(text, m.content); // links clickable, the rest text nodes, as the visitor sees it
      row.append(text);
    }
    if (m.image_url && /^(https?:\/\/|\/uploads\/)/i.test(m.image_url)) {
      row.append(
        h("a", { class: "msg__image", href: m.image_url, target: "_blank", rel: "noopener" },
          h("img", { src: m.image_url, alt: "Image sent in the conversation", loading: "lazy" })),
      );
    }
    if (m.attachments?.length) row.append(attachmentList(m.attachments));
    // The text shown is the customer's new words only; the mail's headers and quoted history
    // stay in its original.
    if (m.sender === "visitor" && current?.channel === "email") row.append(originalLink(m.id));
    if (m.translation) {
      row.append(
        h("p", { class: "msg__translation" }, `Translation (${m.translation_lang}): `,
          m.translation),
      );
    }
    if (m.private) {
      row.append(h("p", { class: "msg__hint" }, "Only operators see this note."));
    } else if (m.delivery) {
      row.append(
        h("p", { class: "msg__delivery", dataset: { delivery: m.delivery } },
          `Delivery: ${m.delivery}`),
      );
    }
    return row;
  }

  /** "Seen" under the newest operator reply the visitor has read (their read cursor). */
  function showSeen() {
    const read = current ? current.visitor_read_seq || 0 : 0;
    let target = null;
    for (const [seq, m] of messages) {
      if (m.sender === "operator" && !m.private && seq <= read && (!target || seq > target)) {
        target = seq;
      }
    }
    const shown = log.querySelector(".msg__seen");
    if (shown && shown.parentNode === rows.get(target)) return;
    if (shown) shown.remove();
    if (target) rows.get(target).append(h("p", { class: "msg__seen" }, "Seen"));
  }

  /** Viewing the newest message marks the visitor's messages read (the unread badge clears);
   * only while the operator can actually see the page. */
  function markRead() {
    const seen = document.visibilityState === "visible" && thread.offsetParent !== null;
    if (!seen || !current || !current.unread) return;
    clearTimeout(readTimer);
    const id = openId;
    readTimer = setTimeout(() => {
      if (id === openId) {
        api("GET", `operator/conversation/${encodeURIComponent(id)}`, { limit: 1 }).catch(fail);
      }
    }, READ_DELAY_MS);
  }
  document.addEventListener("visibilitychange", markRead);

  // -- the header, controls and details ----------------------------------------------------------

  // Who answers the customer now (the server's control state, issue 16).
  const CONTROL_LABELS = {
    bot: "the bot",
    queued: "operators (waiting in the queue)",
    human: "operators",
    closed: "nobody (closed)",
  };

  function ownerName(c) {
    if (c.operator_id === null) return "Unassigned";
    if (c.operator_id === ctx.me.id) return "Owner: you";
    return `Owner: ${ctx.operators.get(c.operator_id)?.name || `operator ${c.operator_id}`}`;
  }

  /** The conversation as it is now (from a load or the stream). */
  function update(c) {
    if (c.id !== openId) return;
    const renamed = current && contactName(current) !== contactName(c);
    current = c;
    // Only the conversation's own answer says it; events carry the conversation without it.
    if ("sms_opted_out" in c) {
      optedOut = c.sms_opted_out;
      setMode();
    }
    $("convo-name").textContent = contactName(c);
    $("convo-channel").replaceWith(Object.assign(channelTag(c.channel), { id: "convo-channel" }));
    $("convo-status").replaceWith(Object.assign(statusTag(c.status), { id: "convo-status" }));
    $("convo-owner").textContent = ownerName(c);
    const accept = $("accept");
    accept.textContent =
      c.status === "resolved" ? "Reopen" : c.mode === "bot" ? "Take over" : "Accept";
    accept.hidden = c.status === "active" && c.mode === "operator" && c.operator_id !== null;
    $("resolve").hidden = c.status === "resolved";
    $("set-status").value = c.status;
    transferTargets();
    details(c);
    typingChanged(c.id);
    if (renamed) for (const m of messages.values()) add(m, { scroll: false, redraw: true });
    if (c.unread) markRead();
    showSeen();
  }

  function transferTargets() {
    if (!current) return;
    const select = $("transfer-to");
    const chosen = select.value;
    const operators = [...ctx.operators.values()].filter(
      (o) => o.id !== current.operator_id && o.active !== false,
    );
    // Rebuilt only when the choices change: rebuilding would close a list the operator opened.
    const choices = JSON.stringify([operators, ctx.teams]);
    if (select.dataset.choices === choices) return;
    select.dataset.choices = choices;
    select.replaceChildren(
      h("option", { value: "" }, "Transfer to…"),
      h("optgroup", { label: "Operators" },
        operators.map((o) => {
          const you = o.id === ctx.me.id ? " (you)" : "";
          const state = o.online ? (o.away ? "away" : "online") : "offline";
          const label = `${o.name}${you} — ${state}`;
          return h("option", { value: `operator:${o.id}` }, label);
        })),
      ctx.teams.length > 0 ?
        h("optgroup", { label: "Teams" },
          ctx.teams.map((t) => h("option", { value: `team:${t.id}` }, t.name))) : "",
    );
    select.value = chosen;
    if (select.value !== chosen) select.value = "";
  }

  function answeredBy(c) {
    // Every conversation starts in the bot's hands: until a bot has written, nobody answered.
    if (c.control === "bot" && !c.bot_answered) return "nobody yet";
    return CONTROL_LABELS[c.control] || c.control;
  }

  /** Where the widget's visitor is (docs/api.md, "Visitor context"), as [term, value] pairs;
   * pages as links that open outside the inbox. */
  function visitorFacts(v) {
    const link = (url, title) =>
      h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, title || url);
    const facts = [];
    if (v.start_url) facts.push(["Started on", link(v.start_url, v.start_title)]);
    if (v.url && v.url !== v.start_url) facts.push(["Now on", link(v.url, v.title)]);
    if (v.referrer) facts.push(["Came from", link(v.referrer)]);
    if (v.browser || v.os) {
      facts.push(["Browser", [v.browser, v.os].filter(Boolean).join(" on ")]);
    }
    if (v.time_zone) facts.push(["Local time", localTime(v.time_zone)]);
    return facts;
  }

  function localTime(zone) {
    try {
      const now = new Intl.DateTimeFormat(undefined, {
        timeZone: zone,
        weekday: "short",
        hour: "2-digit",
        minute: "2-digit",
      }).format(new Date());
      return `${now} (${zone})`;
    } catch {
      return zone; // a zone this browser does not know: its name still says where
    }
  }

  function details(c) {
    $("details").hidden = false;
    const form = $("visitor-form");
    // A field the operator is editing is theirs until they save.
    if (!form.contains(document.activeElement)) {
      $("visitor-name").value = c.contact_data.name;
      $("visitor-email").value = c.contact_data.email;
      $("visitor-phone").value = c.contact_data.phone;
      $("visitor-info").value = c.contact_data.info;
    }
    const site = ctx.sites.find((s) => s.id === c.site_id);
    const team = ctx.teams.find((t) => t.id === c.team_id);
    const facts = [
      ["Channel", CHANNEL_LABELS[c.channel] || c.channel],
      ["Status", STATUS_LABELS[c.status] || c.status],
      ["Answered by", answeredBy(c)],
      ["Site", site ? site.name : `Site ${c.site_id}`],
      ["Team", team ? team.name : "None"],
      ["Started", fullTime(c.created)],
      ["Last activity", fullTime(c.last_activity)],
      ["Conversation", c.id],
    ];
    if (c.session_id) facts.push(["Session", c.session_id]);
    facts.push(...visitorFacts(c.visitor_context || {}));
    // What a bot platform handed over about its user (never its hidden attributes).
    for (const [key, value] of Object.entries(c.attributes || {})) facts.push([key, value]);
    $("facts").replaceChildren(
      ...facts.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
    );
    $("block-state").textContent = c.blocked
      ? `Blocked: ${$("block-type").querySelector(`[value="${c.block_type}"]`)?.textContent}`
      : "Not blocked";
    $("block-choice").hidden = c.blocked;
    $("block").textContent = c.blocked ? "Unblock" : "Block";
  }

  /** POSTs ``path`` for the open conversation; the stream brings the change back. */
  async function act(path, fields) {
    say($("convo-error"), "");
    const answer = await api("POST", `operator/${path}`, fields);
    if (answer.conversation) update(answer.conversation);
    return answer;
  }

  const idPath = (verb) => `${verb}/${encodeURIComponent(openId)}`;
  $("accept").addEventListener("click", () => act(idPath("accept")).catch(fail));
  $("resolve").addEventListener("click", () => act(idPath("close")).catch(fail));
  $("set-status").addEventListener("change", (event) =>
    act(`conversation/${encodeURIComponent(openId)}/status`, { status: event.target.value }).catch(
      fail,
    ),
  );
  $("transfer").addEventListener("click", () => {
    const [kind, id] = $("transfer-to").value.split(":");
    if (!id) return say($("convo-error"), "Choose an operator or a team to transfer to.");
    const note = $("transfer-note").value.trim();
    act(idPath("transfer"), { [`${kind}_id`]: Number(id), note })
      .then(() => {
        $("transfer-to").value = "";
        $("transfer-note").value = "";
        say($("composer-status"), "Transferred.");
      })
      .catch(fail);
  });
  $("block").addEventListener("click", () =>
    act(`conversation/${encodeURIComponent(openId)}/block`, {
      blocked: !current.blocked,
      block_type: $("block-type").value,
    }).catch(fail),
  );
  $("visitor-form").addEventListener("submit", (event) => {
    event.preventDefault();
    say($("visitor-error"), "");
    say($("visitor-status"), "");
    act(`conversation/${encodeURIComponent(openId)}/visitor`, {
      name: $("visitor-name").value,
      email: $("visitor-email").value,
      phone: $("visitor-phone").value,
      info: $("visitor-info").value,
    })
      .then(() => say($("visitor-status"), "Details saved."))
      .catch((error) => say($("visitor-error"), error.message));
  });
  $("older").addEventListener("click", () => loadOlder().catch(fail));

  // -- typing ------------------------------------------------------------------------------------

  function typingChanged(id) {
    if (id !== openId) return;
    const typing = $("typing");
    typing.hidden = !ctx.isTyping(id);
    const who = current ? contactName(current) : "Visitor";
    typing.textContent = typing.hidden ? "" : `${who} is typing…`;
  }

  text.addEventListener("input", () => {
    if ($("composer-status").textContent === "Transferred.") say($("composer-status"), "");
    // A note is not for the visitor: they must not see "typing" for it either.
    if (mode() !== "reply" || !text.value.trim() || !openId) return;
    const now = Date.now();
    if (now - lastTypingPost < TYPING_THROTTLE_MS) return;
    lastTypingPost = now;
    api("POST", "operator/typing", { conversation_id: openId }).catch(() => {});
  });

  // -- the composer ------------------------------------------------------------------------------

  function setMode() {
    const note = mode() === "note";
    // Notes stay open: operators may still write down what happened.
    const off = !note && optedOut;
    $("composer").classList.toggle("composer--note", note);
    text.placeholder = note ? "Private note — only operators will see it" : "Write a reply…";
    $("send").textContent = note ? "Add note" : "Send";
    $("canned").hidden = note || off;
    $("upload-label").hidden = note || off;
    text.disabled = off;
    $("send").disabled = off;
    $("composer-off").hidden = !off;
    if (note || off) {
      hideCanned();
      hideImage();
    }
  }
  for (const input of document.querySelectorAll('input[name="mode"]')) {
    input.addEventListener("change", setMode);
  }
  setMode();

  async function send(fields, pending) {
    const id = openId;
    say($("composer-status"), pending);
    $("send").disabled = true;
    try {
      const path = mode() === "note" && !fields.canned_id ? "note" : "message";
      const answer = await api("POST", `operator/${path}`, { conversation_id: id, ...fields });
      if (id === openId) add(answer.message);
      say($("composer-status"), "");
      return true;
    } catch (error) {
      say($("composer-status"), "");
      fail(error);
      return false;
    } finally {
      setMode();
    }
  }

  $("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const content = text.value.trim();
    if (!content || !openId) return;
    if (await send({ content }, "Sending…")) text.value = "";
    text.focus();
  });
  createEmojiPicker(text);
  const slash = createSlashPicker(text, {
    // Replies only: a note is for colleagues, who need no greeting.
    canned: () => (mode() === "reply" && current ? ctx.canned : []),
    fill: (c) => fillMacros(c.message, current.contact_data, ctx.me.name),
  });
  text.addEventListener("keydown", (event) => {
    if (slash.handle(event)) {
      event.preventDefault();
      return;
    }
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });

  // -- images: shown before they go, with an optional caption -----------------------------------

  $("upload").addEventListener("change", (event) => {
    const file = event.target.files[0];
    event.target.value = "";
    if (!file || !openId) return;
    hideCanned();
    chosenImage = file;
    const reader = new FileReader();
    // A data: URL, because the inbox's page policy allows data: images and not blob: ones.
    reader.addEventListener("load", () => {
      if (chosenImage !== file) return;
      $("image-preview-frame").replaceChildren(
        h("img", { class: "image-preview__img", src: reader.result, alt: "The image to send" }),
      );
    });
    reader.readAsDataURL(file);
    $("image-preview-title").textContent = `Image to send: ${file.name}`;
    $("image-caption").value = text.value.trim();
    $("image-preview").hidden = false;
    $("image-caption").focus();
  });

  function hideImage() {
    chosenImage = null;
    $("image-preview").hidden = true;
    $("image-preview-frame").replaceChildren();
  }

  async function sendImage() {
    const file = chosenImage;
    if (!file || !openId) return;
    const form = new FormData();
    form.append("image", file);
    say($("convo-error"), "");
    say($("composer-status"), "Uploading…");
    $("image-send").disabled = true;
    try {
      const { url } = await api("POST", "operator/upload-image", form);
      const caption = $("image-caption").value.trim();
      if (await send({ content: caption, image_url: url }, "Sending…")) {
        if (caption === text.value.trim()) text.value = "";
        hideImage();
        text.focus();
      }
    } catch (error) {
      say($("composer-status"), "");
      fail(error);
    } finally {
      $("image-send").disabled = false;
    }
  }

  $("image-send").addEventListener("click", sendImage);
  $("image-caption").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.isComposing) {
      event.preventDefault();
      sendImage();
    } else if (event.key === "Escape") {
      hideImage();
      text.focus();
    }
  });
  $("image-cancel").addEventListener("click", () => {
    hideImage();
    text.focus();
  });

  // -- canned responses --------------------------------------------------------------------------

  const menu = $("canned-menu");
  const toggle = $("canned-toggle");

  function showMenu(show) {
    menu.hidden = !show;
    toggle.setAttribute("aria-expanded", String(show));
    if (show) {
      $("canned-search").value = "";
      cannedList();
      $("canned-search").focus();
    }
  }

  function cannedList() {
    const words = $("canned-search").value.toLowerCase().split(/\s+/).filter(Boolean);
    const found = ctx.canned.filter((c) =>
      words.every((w) => `${c.name} ${c.tag} ${c.message}`.toLowerCase().includes(w)),
    );
    $("canned-list").replaceChildren(
      ...(found.length
        ? found.map((c) =>
            h("li", {},
              h("button", { type: "button", class: "canned__item", onclick: () => chooseCanned(c) },
                h("span", { class: "canned__name" }, c.name,
                  c.personal && h("span", { class: "mine-mark", title: "Your own canned response" }, "Mine")),
                c.tag && h("span", { class: "canned__tag" }, c.tag))))
        : [h("li", { class: "canned__none" }, "No canned responses.")]),
    );
  }

  function chooseCanned(c) {
    chosenCanned = c;
    showMenu(false);
    $("canned-preview-title").textContent = `Canned response: ${c.name}`;
    $("canned-preview-text").textContent = fillMacros(c.message, current.contact_data, ctx.me.name);
    $("canned-preview").hidden = false;
    $("canned-send").focus();
  }

  function hideCanned() {
    chosenCanned = null;
    $("canned-preview").hidden = true;
  }

  toggle.addEventListener("click", () => showMenu(menu.hidden));
  $("canned-search").addEventListener("input", cannedList);
  menu.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      showMenu(false);
      toggle.focus();
    }
  });
  document.addEventListener("click", (event) => {
    if (!menu.hidden && !$("canned").contains(event.target)) showMenu(false);
  });
  $("canned-cancel").addEventListener("click", () => {
    hideCanned();
    text.focus();
  });
  $("canned-send").addEventListener("click", async () => {
    // The server fills the macros itself from what it knows at that moment.
    if (chosenCanned && (await send({ content: "", canned_id: chosenCanned.id }, "Sending…"))) {
      hideCanned();
      text.focus();
    }
  });

  return {
    open,
    close,
    load,
    update,
    add,
    timeline,
    typingChanged,
    openId: () => openId,
    /** Operators, teams or sites changed: names and transfer targets follow. */
    refresh() {
      if (current) update(current);
    },
    /** A phone opted out of SMS on a channel, or back in. */
    optOut(data) {
      const c = current;
      if (c && c.channel_id === data.channel_id && c.contact_data.phone === data.phone) {
        optedOut = data.opted_out;
        setMode();
      }
    },
    /** An MMS picture arrived after its message: the message's image and further pictures,
     * as the message now has them. Pictures are only ever added, and two stored at once may
     * be announced out of order: an announcement showing fewer than the row is older. */
    image(data) {
      const m = messages.get(data.seq);
      if (data.conversation_id === openId && m && pictures(data) >= pictures(m)) {
        add({ ...m, image_url: data.image_url, attachments: data.attachments }, { scroll: false });
      }
    },
    /** The visitor read further: "Seen" moves. */
    read(data) {
      if (current && data.conversation_id === openId) {
        current = { ...current, visitor_read_seq: data.visitor_read_seq };
        showSeen();
      }
    },
    delivery(data) {
      const m = messages.get(data.seq);
      if (data.conversation_id === openId && m) {
        add({ ...m, delivery: data.delivery }, { scroll: false });
      }
    },
    contactMerged(data) {
      contactPanel.merged(data);
    },
  };
}
