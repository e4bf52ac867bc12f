/* Live Operator Chat website widget: see README, "Embedding the chat widget". */
(async () => {
  // An async script may run with currentScript unset.
  const me =
    document.currentScript || document.querySelector('script[data-account][src*="widget.js"]');
  const opt = (me && me.dataset) || {};
  const account = (opt.account || "").trim();
  if (!account || window.liveopWidget) return;
  window.liveopWidget = 1; // the snippet pasted twice
  const origin = new URL(me.src).origin;
  const base = `${origin}/${encodeURIComponent(account)}/liveoperator/`;
  const site = /^[1-9]\d{0,8}$/.test(opt.site) ? opt.site : "1";
  // Per setting: [default, valid values].
  const settings = {
    color: ["#2f5bea", /^#[0-9a-f]{6}$/i],
    position: ["right", /^(left|right)$/],
    greeting: ["", /^/],
  };
  let conf = {};
  let away = false; // nobody can answer now (issue 18): the chat window says more
  try {
    const res = await fetch(`${base}widget-config?site=${site}`, {
      signal: AbortSignal.timeout(4000), // a slow server must not keep the launcher away
      credentials: "omit",
    });
    if (res.ok) {
      const answer = await res.json();
      conf = answer.site || {};
      away = !!(answer.availability && answer.availability.away === true);
    }
  } catch {
    // Without the site's settings the defaults make a working widget.
  }
  // The script tag's data-* first, then the site's settings, then the default.
  const get = (k) =>
    ([opt[k], conf[k]].find((v) => typeof v === "string" && settings[k][1].test(v.trim())) ||
      settings[k][0]).trim();
  const color = get("color");
  const greeting = get("greeting").slice(0, 300);
  const label = (opt.label || "").trim() || "Open chat";
  const [r, g, b] = color.match(/\w\w/g).map((h) => parseInt(h, 16));
  const ink = 0.299 * r + 0.587 * g + 0.114 * b > 160 ? "#1b1f29" : "#fff"; // BT.601 luma
  const css = `:host{all:initial!important;display:block!important}
[hidden]{display:none!important}
button{all:initial;cursor:pointer;display:grid;place-items:center;color:${ink}}
:focus-visible{outline:3px solid #1b1f29;outline-offset:2px;box-shadow:0 0 0 2px #fff}
svg{width:26px;height:26px;fill:none;stroke:currentColor;stroke-width:2.2;stroke-linecap:round;stroke-linejoin:round}
.chat{fill:currentColor}
[aria-expanded=true] .chat,[aria-expanded=false] .x{display:none}
.launcher,.panel,.peek{position:fixed;bottom:20px;${get("position")}:20px;z-index:2147483000}
.launcher{width:60px;height:60px;border-radius:50%;background:${color};box-shadow:0 4px 14px #0004}
.badge{position:absolute;top:-4px;right:-4px;min-width:22px;padding:0 6px;border-radius:11px;background:#d92d20;color:#fff;font:700 12px/22px sans-serif;text-align:center}
.panel{bottom:92px;width:380px;height:min(640px,calc(100vh - 112px));border-radius:16px;overflow:hidden;background:#fff;box-shadow:0 12px 40px #0005;visibility:hidden;opacity:0;transform:translateY(16px);transition:opacity .2s,transform .2s,visibility 0s .2s}
.open{visibility:visible;opacity:1;transform:none;transition-delay:0s}
iframe{display:block;width:100%;height:100%;border:0}
.close{position:absolute;top:16px;right:12px;width:36px;height:36px;border-radius:50%;background:#fff3}
.peek{bottom:92px}
.bubble{display:flex;align-items:start;width:max-content;max-width:min(300px,calc(100vw - 40px));border-radius:14px;background:#fff;box-shadow:0 6px 24px #0004;animation:rise .25s ease-out}
@keyframes rise{from{opacity:0;transform:translateY(8px)}}
.say{display:block;place-items:normal;padding:12px 4px 12px 14px;color:#1b1f29;font:14px/1.4 system-ui,sans-serif;overflow-wrap:anywhere}
.who{display:block;font-weight:700}
.text{display:-webkit-box;-webkit-box-orient:vertical;-webkit-line-clamp:3;overflow:hidden}
.dismiss{flex:none;width:28px;height:28px;margin:6px;border-radius:50%;color:#667085}
.dismiss svg{width:16px;height:16px}
@media (max-width:480px){.panel{inset:0;width:auto;height:auto;border-radius:0}.launcher[aria-expanded=true]{display:none}}
@media (prefers-reduced-motion:reduce){.panel{transition:none}.bubble{animation:none}}`;
  const x = '<svg class="x" viewBox="0 0 24 24"><path d="M6 6l12 12M18 6 6 18"/></svg>';
  // In a shadow root the page's CSS and ours never meet.
  const host = document.createElement("liveop-widget");
  const root = host.attachShadow({ mode: "open" });
  // A constructed sheet is not inline style: pages whose CSP forbids that still get the widget.
  const sheet = root.adoptedStyleSheets && new CSSStyleSheet();
  root.innerHTML = `${sheet ? "" : `<style>${css}</style>`}<button class="launcher" aria-expanded="false" aria-controls="p"><svg class="chat" viewBox="0 0 24 24"><path d="M4 4h16v12H9l-5 4z"/></svg>${x}<span class="badge" hidden></span></button><div class="panel" id="p" role="dialog" aria-label="Chat" inert><button class="close" aria-label="Close chat">${x}</button></div><div class="peek" role="status"><div class="bubble" hidden><button class="say"><span class="who"></span><span class="text"></span></button><button class="dismiss" aria-label="Dismiss">${x}</button></div></div>`;
  if (sheet) {
    sheet.replaceSync(css);
    root.adoptedStyleSheets = [sheet];
  }
  const [launcher, panel, badge, close, bubble, say, who, text, dismiss] = [
    "launcher", "panel", "badge", "close", "bubble", "say", "who", "text", "dismiss",
  ].map((c) => root.querySelector(`.${c}`));
  let frame, loaded;
  let open = false;

  // The page the visitor is on, for the operators (docs/api.md, "Visitor context"): no
  // fragment (it may carry a sign-in token), nothing the server would refuse.
  const page = () => {
    const url = location.href.split("#")[0];
    const ref = document.referrer;
    return {
      url: url.length <= 2000 ? url : "",
      title: document.title.replace(/[\u0000-\u001f\u007f-\u009f]/g, "").slice(0, 300),
      referrer: ref.length <= 2000 ? ref : "",
    };
  };
  const tell = () =>
    loaded &&
    frame.contentWindow.postMessage({ type: "liveop:state", open, page: page() }, origin);

  function setBadge(n) {
    badge.hidden = !n;
    badge.textContent = n > 9 ? "9+" : n;
    launcher.setAttribute("aria-label", n ? `${label} (${n} unread)` : label);
  }

  // The newest operator message while the panel is closed; the text is never parsed as HTML.
  function peek(name, words) {
    who.textContent = name;
    text.textContent = words;
    bubble.hidden = !words;
  }

  function hush() {
    bubble.hidden = true;
    launcher.focus();
  }

  function mount() {
    if (frame) return;
    frame = document.createElement("iframe");
    frame.title = "Chat";
    const query = new URLSearchParams({ site, embed: 1, color, greeting });
    frame.src = `${base}loadchat?${query}`;
    frame.onload = () => {
      loaded = true;
      // Focus given before the chat window loaded stayed with the blank frame.
      if (open && root.activeElement === frame) frame.contentWindow.focus();
      tell();
    };
    frame.setAttribute("aria-hidden", !open);
    panel.append(frame);
  }

  function toggle(next) {
    open = next;
    if (open) mount();
    panel.classList.toggle("open", open);
    // Closed, the panel and a preloaded chat window in it are out of reach of Tab and screen
    // readers (as well as invisible).
    panel.inert = !open;
    if (frame) frame.setAttribute("aria-hidden", !open);
    launcher.setAttribute("aria-expanded", open);
    if (open) {
      setBadge(0);
      bubble.hidden = true;
    }
    (open ? frame : launcher).focus();
    tell();
  }

  setBadge(0);
  if (away) launcher.title = "We’re away: leave a message";
  launcher.onclick = () => toggle(!open);
  close.onclick = () => toggle(false);
  say.onclick = () => toggle(true);
  dismiss.onclick = hush;
  root.addEventListener("keydown", (e) => e.key === "Escape" && (open ? toggle(false) : hush()));
  // Only our iframe may talk to us (Escape pressed in it comes as "liveop:close").
  addEventListener("message", (e) => {
    const d = e.data;
    if (!frame || e.source !== frame.contentWindow || e.origin !== origin || !d) return;
    if (d.type === "liveop:close" && open) toggle(false);
    if (open) return;
    if (d.type === "liveop:unread") setBadge(Math.max(0, d.count | 0));
    const str = (v, max) => (typeof v === "string" ? v.slice(0, max) : "");
    if (d.type === "liveop:preview") peek(str(d.name, 80), str(d.text, 200));
  });
  // A single-page site changes its page without reloading this script.
  addEventListener("popstate", tell);
  if (document.body) document.body.append(host);
  else addEventListener("DOMContentLoaded", () => document.body.append(host));
  // Preloaded (hidden) after the page's own work, the chat window joins the visitor's
  // session, so an operator can write first; data-preload="false" waits for the first open.
  if (opt.preload !== "false") {
    const idle = () =>
      window.requestIdleCallback ? requestIdleCallback(mount, { timeout: 3000 }) : mount();
    const later = () => setTimeout(idle, 2000);
    if (document.readyState === "complete") later();
    else addEventListener("load", later, { once: true });
  }
})();
