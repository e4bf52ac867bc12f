// Live Operator Chat, operator inbox: signing in, the live stream, and which screen shows.
//
// Plain ES modules, no build step and no framework: the inbox is a handful of views that the
// stream updates in place, which the DOM does directly in less code than a framework's setup.

import { LiveStream, api, authenticate, session } from "./api.js";
import { showAdmin } from "./admin.js";
import { createAlerts } from "./alerts.js";
import { showReports } from "./reports.js";
import { createConversation } from "./conversation.js";
import { showInvitation } from "./invites.js";
import { $, say } from "./dom.js";
import { createList } from "./list.js";
import { showProfile } from "./profile.js";
import { enableShortcuts } from "./shortcuts.js";

const HEARTBEAT_MS = 30000; // the server counts an operator online 75 s after a beat
const RELOAD_RETRY_MS = 3000;
const FLASH_KEY = "liveop:inbox:flash"; // a message for the login page across the reload

let loading = 0;
let queued = [];
let live = false;
const typingTimers = new Map(); // conversation id -> timeout that ends its visitor's typing
let directoryLoaded;

const ctx = {
  me: null,
  operators: new Map(),
  teams: [],
  canned: [],
  sites: [],
  live: () => live,
  isTyping: (id) => typingTimers.has(id),
  guarded,
  refreshDirectory,
  failed: (error) => say($("banner"), `Could not load: ${error.message}`),
  // Operators, teams, canned responses and sites, once they are first loaded.
  directory: new Promise((resolve) => (directoryLoaded = resolve)),
  openId: () => conversation.openId(),
  setMe,
  renewSession,
  listed: (conversations) => alerts.known(conversations),
};
const list = createList(ctx);
const conversation = createConversation(ctx);
const alerts = createAlerts(ctx);
enableShortcuts();

// -- consistency between REST loads and the stream ------------------------------------------
//
// The stream is opened first, and the state is loaded from REST only once it says "ready":
// the server attaches the stream before it reads the cursor it sends, so every change after
// that cursor arrives as an event, and every change before it is in what REST returns.
// Loading first and streaming after would leave a window between the two whose changes
// nobody delivers.
//
// While a load is in flight, events are held back and applied after it, in order. Applied at
// once, an event could be overwritten by an answer the server read before that change, and
// nothing would ever correct it. Held back, an event may repeat what the answer already
// showed (messages are keyed by seq; a conversation is replaced whole and every later change
// of it follows as its own event), so the view always ends on the newest state.

/** Runs ``load`` with the stream's events held back until it (and any other load) ends. */
async function guarded(load) {
  loading += 1;
  try {
    return await load();
  } finally {
    loading -= 1;
    if (loading === 0) {
      const held = queued;
      queued = [];
      for (const [kind, data] of held) apply(kind, data);
    }
  }
}

async function refreshDirectory() {
  const [operators, teams, canned, mine, sites] = await Promise.all([
    api("GET", "operator/operators"),
    api("GET", "admin/teams"),
    api("GET", "admin/canned"),
    api("GET", "operator/canned"),
    api("GET", "operator/sites"),
  ]);
  ctx.operators = new Map(operators.operators.map((o) => [o.id, o]));
  ctx.teams = teams.teams;
  // The operator's own first (marked ``personal``), then the account's.
  ctx.canned = [...mine.canned, ...canned.canned];
  ctx.sites = sites.sites;
  directoryLoaded();
  list.refresh();
  conversation.refresh();
}

/** Everything from REST: on the first "ready" and after a "reset". */
async function reload() {
  try {
    await guarded(async () => {
      await refreshDirectory();
      await Promise.all([list.load(), conversation.load()]);
    });
    say($("banner"), "");
  } catch (error) {
    ctx.failed(error);
    setTimeout(reload, RELOAD_RETRY_MS);
  }
}

function setTyping(id, seconds) {
  clearTimeout(typingTimers.get(id));
  typingTimers.delete(id);
  if (seconds > 0) typingTimers.set(id, setTimeout(() => setTyping(id, 0), seconds * 1000));
  list.redraw();
  conversation.typingChanged(id);
}

function apply(kind, data) {
  alerts.seen(kind, data);
  switch (kind) {
    case "conversation:new":
    case "conversation:qualified":
      list.upsert(data);
      conversation.update(data);
      break;
    case "conversation:updated": {
      // The lines a change is worth ride with it; the rest is the conversation.
      const { timeline, ...updated } = data;
      list.upsert(updated);
      conversation.update(updated);
      conversation.timeline(updated.id, timeline);
      break;
    }
    case "conversation:control_changed":
      list.upsert(data.conversation);
      conversation.update(data.conversation);
      break;
    case "message:new":
      if (data.message.sender === "visitor" && ctx.isTyping(data.conversation_id)) {
        setTyping(data.conversation_id, 0);
      }
      list.upsert(data.conversation);
      conversation.update(data.conversation);
      conversation.add(data.message);
      break;
    case "typing":
      if (data.side === "visitor") setTyping(data.conversation_id, data.expires_in);
      break;
    case "presence": {
      const operator = ctx.operators.get(data.operator_id);
      if (operator) {
        operator.online = data.online;
        operator.away = data.away;
        conversation.refresh();
      }
      break;
    }
    case "read":
      conversation.read(data);
      break;
    case "delivery":
      conversation.delivery(data);
      break;
    case "sms_opt_out":
      conversation.optOut(data);
      break;
    case "message:image":
      conversation.image(data);
      break;
    case "contact:merged":
      conversation.contactMerged(data);
      break;
    case "operator:updated":
      // Keeps what only the directory knows (online, away).
      ctx.operators.set(data.id, { ...ctx.operators.get(data.id), ...data });
      if (data.id === ctx.me.id) setMe(data);
      list.refresh();
      conversation.refresh();
      break;
  }
}

// -- the session ------------------------------------------------------------------------------

/** The signed-in operator as the server last described them (their profile may change). */
function setMe(operator) {
  ctx.me = { ...ctx.me, ...operator };
  $("me").textContent = `${ctx.me.name}${ctx.me.is_admin ? " · admin" : ""}`;
  const saved = session.load();
  if (saved) session.save({ ...saved, operator: ctx.me });
}

/** A password change revoked every token but the new one this session goes on with. */
function renewSession(answer) {
  const expired = () => signOut("Your session has ended. Please sign in again.");
  session.save({ token: answer.token, expires_at: answer.expires_at, operator: answer.operator });
  authenticate(answer.token, expired);
  ctx.stream.bearer = answer.token;
}

function start(saved) {
  ctx.me = saved.operator;
  authenticate(saved.token, () => signOut("Your session has ended. Please sign in again."));
  $("login").hidden = true;
  $("shell").hidden = false;
  setMe(saved.operator);
  alerts.render();
  showAvailability();
  const stream = new LiveStream(saved.token, {
    event: (kind, data) => (loading ? queued.push([kind, data]) : apply(kind, data)),
    live(fresh) {
      live = true;
      document.body.dataset.stream = "live";
      say($("banner"), "");
      if (fresh) reload();
    },
    down() {
      document.body.dataset.stream = "down";
      say($("banner"), "Reconnecting… Live updates are paused.");
    },
    check: () => api("GET", "operator/status"),
  });
  ctx.stream = stream;
  stream.start();
  const beat = () => api("POST", "operator/heartbeat", {}).catch(() => {});
  beat();
  ctx.heartbeat = setInterval(beat, HEARTBEAT_MS);
  route();
}

/** The Online/Away switch as the server has it (it is kept across sign-ins). */
async function showAvailability() {
  try {
    const { away } = await api("GET", "operator/status");
    $("availability").value = away ? "away" : "online";
    document.body.dataset.availability = $("availability").value;
  } catch (error) {
    ctx.failed(error);
  }
}

$("availability").addEventListener("change", async (event) => {
  const away = event.target.value === "away";
  try {
    await api("POST", "operator/availability", { away });
    document.body.dataset.availability = event.target.value;
  } catch (error) {
    event.target.value = away ? "online" : "away";
    say($("banner"), `Could not change your availability: ${error.message}`);
  }
});

function signOut(message) {
  ctx.stream?.stop();
  clearInterval(ctx.heartbeat);
  session.clear();
  if (message) sessionStorage.setItem(FLASH_KEY, message);
  // A fresh page: no state of this session survives in memory.
  location.replace("/app/");
}

function showLogin() {
  $("login").hidden = false;
  $("shell").hidden = true;
  const flash = sessionStorage.getItem(FLASH_KEY);
  sessionStorage.removeItem(FLASH_KEY);
  say($("login-error"), flash);
  $("login-email").focus();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const email = $("login-email").value.trim();
  const password = $("login-password").value;
  // Emails are unique per account: the account is asked for only when the server needs it.
  const account = $("login-account").value.trim();
  if (!email || !password) {
    say($("login-error"), "Enter your email and password.");
    return;
  }
  say($("login-error"), "");
  $("login-submit").disabled = true;
  try {
    const answer = await api(
      "POST",
      "auth/login",
      account ? { email, password, account } : { email, password },
    );
    const saved = { token: answer.token, expires_at: answer.expires_at, operator: answer.operator };
    session.save(saved);
    $("login-password").value = "";
    ctx.focusList = true; // the operator's first move is to pick a conversation
    start(saved);
  } catch (error) {
    if (error.code === "account_required") {
      $("login-account-field").hidden = false;
      say(
        $("login-error"),
        "This email and password sign in to more than one account: enter the account ID.",
      );
      $("login-account").focus();
      return;
    }
    const wrong = account ? "Wrong email, password or account." : "Wrong email or password.";
    say($("login-error"), error.code === "invalid_credentials" ? wrong : error.message);
    $("login-password").select();
  } finally {
    $("login-submit").disabled = false;
  }
});

$("logout").addEventListener("click", () => signOut(""));

// -- screens ----------------------------------------------------------------------------------

/** ``#/inbox``, ``#/inbox/{conversation}``, ``#/reports``, ``#/profile`` or
 * ``#/admin/{resource}``. */
function route() {
  if (!ctx.me) return;
  const [section, arg] = location.hash.replace(/^#\/?/, "").split("/");
  const admin = section === "admin";
  const reports = section === "reports";
  const profile = section === "profile";
  const inbox = !admin && !reports && !profile;
  $("inbox-view").hidden = !inbox;
  $("admin-view").hidden = !admin;
  $("reports-view").hidden = !reports;
  $("profile-view").hidden = !profile;
  // On a phone one pane shows at a time: the list, or the open conversation.
  document.body.dataset.pane = arg && inbox ? "conversation" : "list";
  const links = [["nav-inbox", inbox], ["nav-reports", reports], ["nav-admin", admin],
    ["nav-profile", profile]];
  for (const [link, current] of links) {
    if (current) $(link).setAttribute("aria-current", "page");
    else $(link).removeAttribute("aria-current");
  }
  if (admin) {
    showAdmin(ctx, arg);
  } else if (reports) {
    showReports(ctx);
  } else if (profile) {
    showProfile(ctx);
  } else if (arg) {
    conversation.open(decodeURIComponent(arg));
  } else {
    conversation.close();
  }
  list.redraw();
}
window.addEventListener("hashchange", route);

const saved = session.load();
const invited = location.hash.match(/^#\/invite\/([\w-]+)$/);
if (invited) {
  showInvitation(invited[1], (signedIn) => {
    session.save(signedIn);
    start(signedIn);
  });
} else if (saved) start(saved);
else showLogin();
