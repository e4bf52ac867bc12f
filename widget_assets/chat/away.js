// Live Operator Chat, chat window: when nobody can answer (issue 18). While the site's
// widget-config says "away" (nobody of its team online, or outside business hours), the
// window says so, when to expect an answer, and asks for the visitor's email.

/** Wires the away box in ``ui``; ``config`` is the site's widget-config URL. The email typed
 * here is the details' email (``ui.email``), which every message carries. ``changed``: it
 * showed or hid. */
export function createAway(ui, config, changed) {
  let asked = null; // the request in flight: one at a time

  function show(a) {
    if (!a || typeof a !== "object" || a.away !== true) {
      hide();
      return;
    }
    const text = (v) => (typeof v === "string" ? v.trim() : "");
    ui.awayTitle.textContent = a.open === false ? "We’re closed right now" : "Nobody’s here right now";
    ui.awayText.textContent =
      text(a.away_message) || "Leave us a message with your email and we’ll get back to you.";
    const when = [];
    if (Number.isFinite(a.opens_at)) when.push(`We’re back ${opening(a.opens_at)} (your time).`);
    if (text(a.reply_time)) when.push(`Expected reply: ${text(a.reply_time)}.`);
    ui.awayWhen.textContent = when.join(" ");
    ui.awayWhen.hidden = !when.length;
    if (!ui.awayEmail.value) ui.awayEmail.value = ui.email.value;
    ui.away.hidden = false;
    changed();
  }

  function hide() {
    if (ui.away.hidden) return;
    ui.away.hidden = true;
    changed();
  }

  async function check() {
    if (asked) return asked;
    asked = (async () => {
      try {
        // Past the minute the widget's own copy may be cached: whether anybody is online now.
        const response = await fetch(config, { cache: "no-store", credentials: "omit" });
        if (response.ok) show((await response.json()).availability);
      } catch {
        // Unknown: the window works as when somebody is online.
      } finally {
        asked = null;
      }
    })();
    return asked;
  }

  ui.awayEmail.addEventListener("input", () => {
    ui.email.value = ui.awayEmail.value.trim();
  });
  // The details remember what was typed on "change".
  ui.awayEmail.addEventListener("change", () => ui.email.dispatchEvent(new Event("change")));

  return {
    check,
    /** An operator just wrote: somebody is here after all. */
    answered: hide,
  };
}

function opening(seconds) {
  return new Intl.DateTimeFormat(undefined, {
    weekday: "long",
    hour: "numeric",
    minute: "2-digit",
  }).format(new Date(seconds * 1000));
}
