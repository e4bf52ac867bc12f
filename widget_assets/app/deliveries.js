// Live Operator Chat, operator inbox: a webhook's delivery log (issue 16) — its latest
// deliveries with every attempt, each one sendable again — and re-enabling a webhook the
// worker disabled after a delivery kept failing. Row actions of Admin → Webhooks.

import { api } from "./api.js";
import { fullTime, h, say } from "./dom.js";

// How often an open log looks again while a delivery is queued; the worker polls every second.
const WATCH_MS = 3000;
const STATES = { queued: "Queued", sent: "Sent", failed: "Failed" };

/** One attempt as a line: what the endpoint answered, or why it could not be reached. */
function attemptLine(a) {
  const answer = a.status_code === null ? "no answer" : `HTTP ${a.status_code}`;
  return h("li", {}, `#${a.attempt} ${fullTime(a.at)}: ${answer}${a.error ? ` (${a.error})` : ""}`);
}

/** The attempts cell: how many, and each of them (newest first, as the API lists them);
 * ``open`` keeps them unfolded across a refresh. */
function attempts(d, open) {
  if (!d.attempts.length) return "None yet";
  const count = d.attempts.length === 1 ? "1 attempt" : `${d.attempts.length} attempts`;
  return h("details", { open }, h("summary", {}, count),
    h("ul", { class: "deliveries__attempts" }, d.attempts.map(attemptLine)));
}

/** Shows ``webhook``'s latest deliveries in a dialog, each with a Replay button. Resolves to
 * null when it closes: replaying changes nothing on the webhook's row. */
export function showDeliveries(webhook) {
  return new Promise((resolve) => {
    const path = `admin/webhooks/${webhook.id}/deliveries`;
    const status = h("p", { class: "admin__status", role: "status", hidden: true });
    const list = h("div", { class: "deliveries__list" });
    const dialog = h("dialog", { class: "dialog dialog--wide",
      "aria-labelledby": "deliveries-title" });

    const replay = async (d) => {
      try {
        await api("POST", `${path}/${encodeURIComponent(d.id)}/replay`, {});
        // A disabled webhook is not posted to: what is queued waits for it to be re-enabled.
        say(status, webhook.enabled
          ? `Queued ${d.event} again: it goes out now.`
          : `Queued ${d.event} again: it goes out once the webhook is re-enabled.`);
        await load();
      } catch (error) {
        say(status, error.message);
      }
    };

    const table = (deliveries, unfolded) => h("table", { class: "admin__table" },
      h("caption", { class: "visually-hidden" }, "Latest deliveries, newest first"),
      h("thead", {}, h("tr", {},
        ["Event", "Status", "Attempts", "Last error", "Time"].map((t) => h("th", { scope: "col" }, t)),
        h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
      h("tbody", {}, deliveries.map((d) => h("tr", { dataset: { id: d.id } },
        h("td", {}, d.event),
        h("td", {}, STATES[d.state] || d.state),
        h("td", {}, attempts(d, unfolded.has(d.id))),
        h("td", {}, d.last_error || ""),
        h("td", {}, fullTime(d.created)),
        h("td", {}, h("button", { type: "button", class: "button button--quiet",
          "aria-label": `Replay ${d.event} of ${fullTime(d.created)}`, title: `Delivery ${d.id}`,
          onclick: () => replay(d) }, "Replay"))))));

    let watch = null; // the next look while something is still queued

    async function load() {
      try {
        const { deliveries } = await api("GET", path);
        const unfolded = new Set([...list.querySelectorAll("tr:has(details[open])")]
          .map((tr) => tr.dataset.id));
        list.replaceChildren(deliveries.length
          ? table(deliveries, unfolded)
          : h("p", {}, "Nothing was sent to this webhook yet."));
        // A queued delivery (a replay, a retry) turns sent or failed on its own: follow it.
        // One timer at most, however many looks (Refresh, Replay) overlap.
        clearTimeout(watch);
        if (dialog.open && webhook.enabled && deliveries.some((d) => d.state === "queued")) {
          watch = setTimeout(load, WATCH_MS);
        }
      } catch (error) {
        list.replaceChildren(h("p", { class: "form-error", role: "alert" }, error.message));
      }
    }

    dialog.append(
      h("h3", { id: "deliveries-title" }, `Deliveries to ${webhook.url}`),
      // Not h(): the DOM's append writes a null or false child as its name.
      webhook.enabled ? "" : h("p", { class: "admin__note" }, `Disabled: ${webhook.disabled_reason}`),
      list,
      status,
      h("div", { class: "admin__buttons" },
        h("button", { type: "button", class: "button", onclick: load }, "Refresh"),
        h("button", { type: "button", class: "button button--quiet",
          onclick: () => dialog.close() }, "Close")),
    );
    dialog.addEventListener("close", () => {
      clearTimeout(watch);
      dialog.remove();
      resolve(null);
    });
    list.append(h("p", {}, "Loading…"));
    document.body.append(dialog);
    dialog.showModal();
    load();
  });
}

/** Turns a disabled webhook back on: what was queued for it goes out, in order. */
export async function reenableWebhook(webhook) {
  await api("PATCH", `admin/webhooks/${webhook.id}`, { enabled: true });
  return `Re-enabled “${webhook.url}”: what was queued for it goes out now, in order.`;
}
