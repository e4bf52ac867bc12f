// Live Operator Chat, operator inbox: the conversation list, its views and filters.
//
// The list holds the conversations that match the current filters: the first page(s) from
// GET inbox, then whatever the stream says changed. Rows are kept per conversation and
// updated in place, so keyboard focus survives live updates.

import { api } from "./api.js";
import { $, channelTag, contactName, h, say, statusTag, timeTag } from "./dom.js";

const PAGE = 50;
const SEARCH_DELAY_MS = 300;
// The tab's own storage, like the session: a reload keeps the view, another tab starts fresh.
const FILTERS_KEY = "liveop:inbox:filters";

/** Newest activity first, ties by id (descending), as the server pages them. */
function byActivity(a, b) {
  return b.last_activity - a.last_activity || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

export function createList(ctx) {
  const list = $("convo-list");
  const items = new Map(); // id -> conversation, only ones that match the filters
  const rows = new Map(); // id -> <li>
  let drawn = new WeakMap(); // <li> -> what it shows, so unchanged rows are not redrawn
  let nextCursor = null;
  let loaded = false; // "nothing here" only once a load said so
  let generation = 0; // answers to a superseded load are dropped
  let searchTimer = 0;

  function filters() {
    const owner = document.querySelector('input[name="owner"]:checked').value;
    const status = $("filter-status").value;
    return {
      owner: owner === "team" ? "all" : owner,
      team_id: owner === "team" ? Number($("filter-team").value) || null : null,
      statuses: status ? status.split(",") : null,
      channel: $("filter-channel").value || null,
      q: $("filter-q").value.trim(),
    };
  }

  /** Whether the server would list ``c`` under the current filters (docs/api.md, "Who sees
   * what"). A search cannot be checked here (it looks into messages): while one is active,
   * conversations already listed stay and no new ones are added. */
  function matches(c, f = filters()) {
    const me = ctx.me;
    const visible =
      me.is_admin ||
      c.team_id === null ||
      c.operator_id === me.id ||
      ctx.teams.some((t) => t.id === c.team_id && t.member_ids.includes(me.id));
    return (
      visible &&
      c.block_type !== "operator" &&
      (!f.statuses || f.statuses.includes(c.status)) &&
      (!f.channel || c.channel === f.channel) &&
      (f.owner !== "mine" || c.operator_id === me.id) &&
      (f.owner !== "unassigned" || c.operator_id === null) &&
      (!f.team_id || c.team_id === f.team_id)
    );
  }

  async function load(more = false) {
    const mine = more ? generation : ++generation;
    const f = filters();
    const answer = await api("GET", "operator/inbox", {
      owner: f.owner,
      team_id: f.team_id,
      status: f.statuses && f.statuses.join(","),
      channel: f.channel,
      q: f.q,
      cursor: more ? nextCursor : null,
      limit: PAGE,
    });
    if (mine !== generation) return;
    if (!more) items.clear();
    loaded = true;
    for (const c of answer.conversations) items.set(c.id, c);
    ctx.listed(answer.conversations);
    nextCursor = answer.next_cursor;
    render();
    if (ctx.focusList) {
      ctx.focusList = false;
      (list.querySelector('.row[tabindex="0"]') || list).focus();
    }
  }

  /** A conversation as the stream reports it now. */
  function upsert(c) {
    const f = filters();
    const known = items.has(c.id);
    if (!matches(c, f)) {
      if (!known) return;
      items.delete(c.id);
    } else if (known || (!f.q && beforeTheEnd(c))) {
      items.set(c.id, c);
    } else {
      return;
    }
    render();
  }

  /** A conversation not listed yet belongs in the loaded pages unless it sorts after their
   * end (its place is then on a page not fetched yet). */
  function beforeTheEnd(c) {
    if (nextCursor === null) return true;
    const listed = [...items.values()];
    return listed.length === 0 || listed.every((other) => byActivity(c, other) <= 0);
  }

  function render() {
    const order = [...items.values()].sort(byActivity);
    const focused = document.activeElement && document.activeElement.dataset.id;
    for (const [id, row] of rows) {
      if (!items.has(id)) {
        row.remove();
        rows.delete(id);
      }
    }
    order.forEach((c, index) => {
      let row = rows.get(c.id);
      if (!row) {
        row = h("li", { role: "option", class: "row", dataset: { id: c.id } });
        rows.set(c.id, row);
      }
      fill(row, c);
      if (list.children[index] !== row) list.insertBefore(row, list.children[index] || null);
    });
    const current = rows.get(focused);
    if (current && document.activeElement !== current) current.focus();
    rove();
    say($("list-empty"), order.length || !loaded ? "" : "No conversations here.");
    $("list-more").hidden = nextCursor === null;
    const unread = order.reduce((sum, c) => sum + (c.unread > 0 ? 1 : 0), 0);
    document.title = `${unread ? `(${unread}) ` : ""}Inbox — Live Operator Chat`;
  }

  function fill(row, c) {
    const selected = c.id === ctx.openId();
    const typing = ctx.isTyping(c.id);
    const was = drawn.get(row);
    if (was && was.c === c && was.selected === selected && was.typing === typing) return;
    drawn.set(row, { c, selected, typing });
    row.setAttribute("aria-selected", String(selected));
    row.dataset.channel = c.channel;
    row.dataset.status = c.status;
    row.classList.toggle("row--unread", c.unread > 0);
    const owner =
      c.operator_id === null
        ? "Unassigned"
        : c.operator_id === ctx.me.id
          ? "You"
          : ctx.operators.get(c.operator_id)?.name || `Operator ${c.operator_id}`;
    row.replaceChildren(
      h("span", { class: "row__top" },
        h("span", { class: "row__name" }, contactName(c)),
        timeTag(c.last_activity)),
      h("span", { class: "row__tags" }, channelTag(c.channel), statusTag(c.status),
        h("span", { class: "row__owner" }, owner)),
      h("span", { class: typing ? "row__preview row__preview--typing" : "row__preview" },
        typing ? "typing…" : c.preview || " "),
      c.unread > 0 ?
        h("span", { class: "badge" },
          h("span", { "aria-hidden": "true" }, String(c.unread)),
          h("span", { class: "visually-hidden" }, `, ${c.unread} unread`)) : "",
    );
  }

  /** Exactly one row is in the tab order: the focused one, else the open one, else the first. */
  function rove(target) {
    const all = [...list.children];
    const chosen =
      target ||
      all.find((r) => r === document.activeElement) ||
      all.find((r) => r.getAttribute("aria-selected") === "true") ||
      all[0];
    for (const row of all) row.tabIndex = row === chosen ? 0 : -1;
  }

  function openRow(row) {
    if (row) location.hash = `#/inbox/${encodeURIComponent(row.dataset.id)}`;
  }

  list.addEventListener("click", (event) => openRow(event.target.closest(".row")));
  list.addEventListener("keydown", (event) => {
    const row = event.target.closest(".row");
    if (!row) return;
    const all = [...list.children];
    const index = all.indexOf(row);
    const to = {
      ArrowDown: all[index + 1],
      ArrowUp: all[index - 1],
      Home: all[0],
      End: all[all.length - 1],
    }[event.key];
    if (to) {
      event.preventDefault();
      rove(to);
      to.focus();
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      openRow(row);
    }
  });

  /** The view and filters as the operator left them, for the next reload of this tab. */
  function remember() {
    const owner = document.querySelector('input[name="owner"]:checked').value;
    const saved = {
      owner,
      team: $("filter-team").value,
      status: $("filter-status").value,
      channel: $("filter-channel").value,
    };
    try {
      sessionStorage.setItem(FILTERS_KEY, JSON.stringify(saved));
    } catch {
      /* storage full or refused: the view simply starts as the default next time */
    }
  }

  function saved() {
    try {
      const found = JSON.parse(sessionStorage.getItem(FILTERS_KEY) || "null");
      return found && typeof found === "object" ? found : {};
    } catch {
      return {};
    }
  }

  /** Puts back what ``remember`` kept; a value no longer offered leaves the default. */
  function restore() {
    const kept = saved();
    for (const [id, value] of [["filter-status", kept.status], ["filter-channel", kept.channel]]) {
      const select = $(id);
      if (typeof value === "string" && [...select.options].some((o) => o.value === value)) {
        select.value = value;
      }
    }
    const owner = document.querySelector(`input[name="owner"][value="${kept.owner}"]`);
    if (owner && kept.owner !== "team") owner.checked = true;
  }
  restore();

  const reload = () => {
    remember();
    return ctx.guarded(() => load()).catch(ctx.failed);
  };
  for (const input of document.querySelectorAll('input[name="owner"]')) {
    input.addEventListener("change", () => {
      $("team-filter").hidden = input.value !== "team" || !input.checked;
      reload();
    });
  }
  for (const id of ["filter-team", "filter-status", "filter-channel"]) {
    $(id).addEventListener("change", reload);
  }
  $("filter-q").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(reload, SEARCH_DELAY_MS);
  });
  $("list-more").addEventListener("click", () => ctx.guarded(() => load(true)).catch(ctx.failed));

  return {
    load,
    upsert,
    redraw: render,
    /** Redraws the rows (selection, typing, names), keeping what is listed. */
    refresh() {
      const select = $("filter-team");
      const chosen = select.value || saved().team;
      select.replaceChildren(...ctx.teams.map((t) => h("option", { value: t.id }, t.name)));
      if (chosen) select.value = chosen;
      const team = document.querySelector('input[name="owner"][value="team"]');
      team.disabled = !ctx.teams.length;
      // A team view needs the teams: it comes back once they are known.
      if (!team.checked && saved().owner === "team" && select.value && select.value === chosen) {
        team.checked = true;
        $("team-filter").hidden = false;
        reload();
      }
      drawn = new WeakMap(); // operators' names may have changed
      render();
    },
    get(id) {
      return items.get(id);
    },
  };
}
