// Live Operator Chat, operator inbox: not missing a customer (issue 18). A sound, a desktop
// notification and a line in the page when a customer writes in a conversation that is the
// operator's or unassigned and not on their screen, when a conversation is handed to them, and
// when a colleague's private note names them with an @.
// Muting is the operator's own choice, kept in this browser.

import { $, contactName, h } from "./dom.js";

const TONE_HZ = 880;
const TONE_S = 0.18;

export function createAlerts(ctx) {
  const owners = new Map(); // conversation id -> owner, as the last event said
  let audio = null;

  const muteKey = () => `liveop:inbox:mute:${ctx.me.email}:${ctx.me.id}`;
  const muted = () => localStorage.getItem(muteKey()) === "1";
  const supported = () => typeof Notification === "function";

  /** The controls in the top bar, as the browser's permission and the operator's mute are. */
  function render() {
    const enable = $("alerts-enable");
    const permission = supported() ? Notification.permission : "unsupported";
    enable.hidden = permission !== "default";
    $("alerts-state").textContent =
      permission === "denied" ? "Desktop notifications are blocked in this browser" : "";
    $("alerts-mute").checked = muted();
  }

  /** Whether ``text`` names me: ``@`` and my whole name or its first word, in any case, and
   * not the start of a longer word ("@Sam" is not "@Samantha"). */
  function mentionsMe(text) {
    const name = ctx.me.name.trim();
    if (!name) return false;
    const escape = (n) => n.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const names = [name, name.split(/\s+/)[0]].map(escape);
    return new RegExp(`@(?:${names.join("|")})(?![\\p{L}\\p{N}])`, "iu").test(text);
  }

  function onScreen(id) {
    return document.visibilityState === "visible" && ctx.openId() === id && !$("convo").hidden;
  }

  function mineOrQueued(c) {
    if (c.operator_id !== null) return c.operator_id === ctx.me.id;
    return (
      c.team_id === null ||
      ctx.teams.some((t) => t.id === c.team_id && t.member_ids.includes(ctx.me.id))
    );
  }

  function tone() {
    // Browsers let a page play sound only after the operator interacted with it.
    if (!audio || audio.state !== "running") return;
    const oscillator = audio.createOscillator();
    const gain = audio.createGain();
    oscillator.frequency.value = TONE_HZ;
    gain.gain.setValueAtTime(0.2, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + TONE_S);
    oscillator.connect(gain).connect(audio.destination);
    oscillator.start();
    oscillator.stop(audio.currentTime + TONE_S);
  }

  function alert(c, title, body) {
    if (muted()) return;
    tone();
    const open = () => {
      window.focus();
      location.hash = `#/inbox/${encodeURIComponent(c.id)}`;
    };
    if (supported() && Notification.permission === "granted") {
      const shown = new Notification(title, { body, tag: `liveop:${c.id}` });
      shown.addEventListener("click", () => {
        open();
        shown.close();
      });
    }
    $("alerts-toast").replaceChildren(
      h("button", { type: "button", class: "toast__open", onclick: open }, `${title}: ${body}`),
    );
    $("alerts-toast").hidden = false;
  }

  /** A stream event, before the views apply it. */
  function seen(kind, data) {
    if (kind === "message:new") {
      const { message: m, conversation: c } = data;
      owners.set(c.id, c.operator_id);
      if (m.private && m.operator_id !== ctx.me.id && !onScreen(c.id) && mentionsMe(m.content)) {
        alert(c, `${m.operator_name} mentioned you`, m.content);
        return;
      }
      if (m.sender !== "visitor" || m.private || !mineOrQueued(c) || onScreen(c.id)) return;
      const title = m.seq === 1 ? "New conversation" : `New message from ${contactName(c)}`;
      alert(c, title, m.content || "[image]");
    } else if (kind === "conversation:new" || kind === "conversation:updated") {
      const before = owners.has(data.id) ? owners.get(data.id) : undefined;
      owners.set(data.id, data.operator_id);
      // Owned by me now, and not by my own doing on this screen: someone handed it to me.
      if (data.operator_id === ctx.me.id && before !== ctx.me.id && !onScreen(data.id)) {
        alert(data, "Transferred to you", contactName(data));
      }
    }
  }

  /** What the list loaded: owners known before any event names them. */
  function known(conversations) {
    for (const c of conversations) if (!owners.has(c.id)) owners.set(c.id, c.operator_id);
  }

  function unlockSound() {
    const Context = window.AudioContext;
    if (!Context) return;
    audio = audio || new Context();
    if (audio.state === "suspended") audio.resume().catch(() => {});
  }

  $("alerts-enable").addEventListener("click", async () => {
    unlockSound();
    if (supported()) await Notification.requestPermission();
    render();
  });
  $("alerts-mute").addEventListener("change", (event) => {
    if (event.target.checked) localStorage.setItem(muteKey(), "1");
    else localStorage.removeItem(muteKey());
  });
  $("alerts-toast").addEventListener("click", () => {
    $("alerts-toast").hidden = true;
  });
  document.addEventListener("pointerdown", unlockSound, { once: true });
  document.addEventListener("keydown", unlockSound, { once: true });

  return { render, seen, known };
}
