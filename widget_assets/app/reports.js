// Live Operator Chat, operator inbox: the Reports page (issue 19) — volume over time, busy
// hours, response times and ratings over a period, charted as plain SVG built here.
//
// No charting library: four small charts are less code than a library's configuration, and
// the inbox keeps its rule of no build step and no third-party script. Every number is also
// written as text (titles, labels, the summary), so the charts never hold the only copy.

import { api, download } from "./api.js";
import { $, CHANNEL_LABELS, h, say } from "./dom.js";

const KINDS = ["volume", "response-times", "handover", "ratings"];
const DEFAULT_DAYS = 30;
const DAY_MS = 86400000;
const SVG = "http://www.w3.org/2000/svg";
const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const BANDS = ["< 1 min", "1–5 min", "5–15 min", "15–60 min", "1–4 h", "4–24 h", "> 1 day"];
const STARS = ["1 ★", "2 ★", "3 ★", "4 ★", "5 ★"];
const COMMENTS_SHOWN = 8; // the newest; the CSV export holds all the report lists

let shown = 0; // the newest load: an older answer arriving late is dropped

/** An SVG element, like dom.h: ``text`` is its textContent, the rest attributes. */
function s(tag, props = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") el.textContent = value;
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) if (child) el.append(child);
  return el;
}

const isoDay = (date) => date.toISOString().slice(0, 10);

/** Seconds as people read a wait: "45 s", "12 min", "3.5 h", "2.1 d"; "–" for none. */
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function form(ctx) {
  const today = new Date();
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const field = (label, control) =>
    h("div", { class: "reports__field" }, h("label", { for: control.id }, label), control);
  const operators = [...ctx.operators.values()];
  return h("form", { class: "reports__filters", id: "reports-form" },
    field("From", h("input", { type: "date", id: "reports-from", required: true,
      value: isoDay(new Date(today - (DEFAULT_DAYS - 1) * DAY_MS)) })),
    field("To", h("input", { type: "date", id: "reports-to", required: true,
      value: isoDay(today) })),
    field("Time zone", h("input", { id: "reports-tz", value: zone, size: 18 })),
    field("Channel", h("select", { id: "reports-channel" },
      h("option", { value: "" }, "All channels"),
      Object.entries(CHANNEL_LABELS).map(([tag, label]) => h("option", { value: tag }, label)))),
    ctx.me.is_admin && field("Operator", h("select", { id: "reports-operator" },
      h("option", { value: "" }, "Everyone"),
      operators.map((o) => h("option", { value: o.id }, o.name)))),
    h("button", { class: "button", type: "submit" }, "Show"),
    h("button", { class: "button button--quiet", type: "button", id: "reports-csv" },
      "Download CSV"));
}

function params() {
  return {
    from: $("reports-from").value,
    to: $("reports-to").value,
    tz: $("reports-tz").value.trim() || "UTC",
    channel: $("reports-channel").value,
    operator_id: $("reports-operator")?.value || "",
  };
}

/** Shows the Reports page: its filters once, then the figures for them. */
export async function showReports(ctx) {
  const body = $("reports-body");
  if (!$("reports-form")) {
    await ctx.directory;
    body.replaceChildren(
      h("h2", { class: "admin__title" }, "Reports"),
      form(ctx),
      h("p", { class: "form-error", id: "reports-error", role: "alert", hidden: true }),
      h("div", { class: "reports__figures", id: "reports-figures", "aria-live": "polite" }),
    );
    $("reports-form").addEventListener("submit", (event) => {
      event.preventDefault();
      load();
    });
    $("reports-csv").addEventListener("click", () => exportAll());
  }
  await load();
}

async function exportAll() {
  const fields = Object.fromEntries(Object.entries(params()).filter(([, v]) => v !== ""));
  try {
    for (const kind of KINDS) {
      await download(`reports/${kind}.csv`, fields, `${kind}-${fields.from}-${fields.to}.csv`);
    }
  } catch (error) {
    say($("reports-error"), error.message);
  }
}

async function load() {
  const mine = ++shown;
  const fields = params();
  say($("reports-error"), "");
  $("reports-figures").setAttribute("aria-busy", "true");
  let answers;
  try {
    answers = await Promise.all(KINDS.map((kind) => api("GET", `reports/${kind}`, fields)));
  } catch (error) {
    if (mine === shown) say($("reports-error"), error.message);
    return;
  } finally {
    if (mine === shown) $("reports-figures").removeAttribute("aria-busy");
  }
  if (mine !== shown) return;
  const [volume, times, handover, ratings] = answers;
  $("reports-figures").replaceChildren(
    summary(volume, times, handover, ratings),
    card("Conversations per day", "chart-volume", volumeChart(volume)),
    card("Busiest hours (opened, by hour of the week)", "chart-hours", hoursChart(volume)),
    card("First response time", "chart-response", responseChart(times)),
    card("Ratings", "chart-ratings", ratingsChart(ratings), comments(ratings)),
  );
}

function card(title, id, ...content) {
  return h("section", { class: "reports__card", id, "aria-label": title },
    h("h3", {}, title), ...content);
}

function summary(volume, times, handover, ratings) {
  const days = volume.rows.filter((r) => r.series === "day");
  const total = (key) => days.reduce((sum, d) => sum + d[key], 0);
  const share = handover.share === null ? "–" : `${Math.round(handover.share * 100)} %`;
  const tiles = [
    ["Opened", String(total("opened"))],
    ["Resolved", String(total("resolved"))],
    ["First response (median)", duration(times.first_response.median_s)],
    ["First response (90 %)", duration(times.first_response.p90_s)],
    ["Resolution (median)", duration(times.resolution.median_s)],
    ["Unanswered", String(times.unanswered)],
    ["Handed over from the bot", share],
    ["Average rating", ratings.average === null ? "–" : `${ratings.average.toFixed(1)} / 5`],
  ];
  return h("dl", { class: "reports__summary", id: "reports-summary" },
    tiles.map(([label, value]) => h("div", { class: "reports__tile" },
      h("dt", {}, label), h("dd", {}, value))));
}

/** Bars: ``items`` are [label, value, title]; a value axis from 0 to the largest. */
function bars(items, { width = 640, height = 180, horizontal = false } = {}) {
  const max = Math.max(1, ...items.map(([, v]) => v));
  const chart = s("svg", { viewBox: `0 0 ${width} ${height + 24}`, class: "chart",
    role: "img", "aria-label": items.map(([label, v]) => `${label}: ${v}`).join(", ") });
  if (horizontal) {
    const row = height / items.length;
    items.forEach(([label, value, title], i) => {
      const length = ((width - 160) * value) / max;
      chart.append(
        s("text", { x: 0, y: i * row + row / 2 + 4, class: "chart__label", text: label }),
        s("rect", { x: 110, y: i * row + 3, width: Math.max(length, 1), height: row - 6,
          class: "chart__bar" }, s("title", { text: title || `${label}: ${value}` })),
        s("text", { x: 116 + length, y: i * row + row / 2 + 4, class: "chart__value",
          text: String(value) }),
      );
    });
    return chart;
  }
  const step = width / Math.max(1, items.length);
  const labelEvery = Math.ceil(items.length / 12);
  items.forEach(([label, value, title], i) => {
    const tall = (height * value) / max;
    chart.append(s("rect", { x: i * step + 1, y: height - tall, width: Math.max(step - 2, 1),
      height: Math.max(tall, value ? 1 : 0), class: "chart__bar" },
      s("title", { text: title || `${label}: ${value}` })));
    if (i % labelEvery === 0) {
      chart.append(s("text", { x: i * step, y: height + 16, class: "chart__label",
        text: label }));
    }
  });
  return chart;
}

function volumeChart(volume) {
  const days = volume.rows.filter((r) => r.series === "day");
  return bars(days.map((d) => [d.when.slice(5), d.opened,
    `${d.when}: ${d.opened} opened, ${d.resolved} resolved`]));
}

/** A week as 7 rows of 24 cells, darker where more conversations were opened. */
function hoursChart(volume) {
  const hours = volume.rows.filter((r) => r.series === "hour_of_week");
  const max = Math.max(1, ...hours.map((r) => r.opened));
  const cell = 24;
  const chart = s("svg", { viewBox: `0 0 ${48 + 24 * cell} ${7 * cell + 20}`, class: "chart",
    role: "img", "aria-label": "Conversations opened by hour of the week" });
  WEEKDAYS.forEach((day, d) => chart.append(s("text", { x: 0, y: d * cell + 16,
    class: "chart__label", text: day })));
  for (const hour of [0, 6, 12, 18]) {
    chart.append(s("text", { x: 48 + hour * cell, y: 7 * cell + 14, class: "chart__label",
      text: `${hour}:00` }));
  }
  hours.forEach((r, i) => {
    chart.append(s("rect", { x: 48 + (i % 24) * cell, y: Math.floor(i / 24) * cell,
      width: cell - 2, height: cell - 2, class: "chart__cell",
      "fill-opacity": (0.08 + (0.92 * r.opened) / max).toFixed(2) },
      s("title", { text: `${WEEKDAYS[Math.floor(i / 24)]} ${r.hour}:00: ${r.opened} opened` })));
  });
  return chart;
}

function responseChart(times) {
  const bands = times.rows.filter((r) => r.figure === "first_response_band");
  return bars(bands.map((b, i) => [BANDS[i], b.count]), { horizontal: true, height: 196 });
}

function ratingsChart(ratings) {
  const scores = ratings.rows.filter((r) => r.kind === "score");
  return bars(scores.map((r) => [STARS[r.score - 1], r.count]), { horizontal: true,
    height: 140 });
}

function comments(ratings) {
  const list = ratings.rows.filter((r) => r.kind === "comment").slice(0, COMMENTS_SHOWN);
  if (!list.length) return h("p", { class: "reports__none" }, "No comments in this period.");
  return h("ul", { class: "reports__comments", id: "reports-comments" },
    list.map((c) => h("li", {}, h("strong", {}, STARS[c.score - 1]), " ", c.comment)));
}
