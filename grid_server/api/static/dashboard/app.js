// The dashboard: login, views by URL fragment (#overview, #market/<interval>, …),
// and live updates from /dashboard/api/stream (reconnects and resumes from the last event).

import { invitations } from "./invitations.js";
import { meters } from "./meters.js";
import * as views from "./views.js";
import { h, setCurrency, when } from "./util.js";

const VIEWS = ["overview", "market", "participants", "payments", "meters", "audit", "invitations"];
const RENDERERS = { ...views, invitations, meters };
const TITLES = {
  overview: "Overview",
  market: "Market",
  participants: "Participants",
  payments: "Payments and ledger",
  meters: "Meters",
  audit: "Audit",
  invitations: "Invitations",
};
const REFRESH_DELAY_MS = 250;
const PAGE = 200; // households per page
const MIN_REFRESH_GAP_MS = 1000;

const state = {
  view: null,
  arg: null,
  lastEvent: null,
  clock: { now: Date.now(), speed: 0, at: performance.now() },
  socket: null,
  retry: 0,
  ticks: [],
  refreshing: false,
  pending: false,
  lastRefresh: 0,
  loggedIn: false,
  renders: 0,
  seq: 0,
  inflight: 0,
};

const $ = (id) => document.getElementById(id);

function gridNow() {
  const c = state.clock;
  return c.now + (performance.now() - c.at) * c.speed;
}

function setClock(clock) {
  state.clock = { now: Date.parse(clock.now), speed: clock.speed, at: performance.now() };
  tick();
}

// --- server ------------------------------------------------------------------------

class Unauthenticated extends Error {}

async function api(path, options = {}) {
  const response = await fetch(`api/${path}`, {
    credentials: "same-origin",
    headers: { Accept: "application/json", ...(options.body ? { "Content-Type": "application/json" } : {}) },
    ...options,
  });
  if (response.status === 401) throw new Unauthenticated();
  const data = await response.json();
  if (!response.ok) throw new Error(data?.error?.message || `HTTP ${response.status}`);
  return data;
}

// --- login -------------------------------------------------------------------------

function showLogin(message) {
  state.loggedIn = false;
  closeSocket();
  document.body.classList.add("logged-out");
  $("login").hidden = false;
  for (const section of document.querySelectorAll("[data-view]")) section.hidden = true;
  $("logout").hidden = true;
  if (message) $("login-message").textContent = message;
  $("token").focus();
}

async function logIn(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  $("login-message").textContent = "Checking…";
  try {
    await api("session", { method: "POST", body: JSON.stringify({ token }) });
  } catch (err) {
    $("login-message").textContent = err instanceof Unauthenticated ? "That is not the operator token." : String(err.message || err);
    return;
  }
  $("token").value = "";
  $("login-message").textContent = "";
  start();
}

async function logOut() {
  await api("session", { method: "DELETE" });
  showLogin("Logged out.");
}

// --- views -------------------------------------------------------------------------

function parseHash() {
  const raw = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [view, ...rest] = raw.split("/");
  return { view: VIEWS.includes(view) ? view : "overview", arg: rest.join("/") || null };
}

function go(target) {
  location.hash = `#${target}`;
}

function show(view) {
  for (const section of document.querySelectorAll("[data-view]")) {
    section.hidden = section.dataset.view !== view;
  }
  for (const link of document.querySelectorAll("nav a[data-nav]")) {
    if (link.dataset.nav === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${TITLES[view]} · grid dashboard`;
}

async function load(view, arg) {
  switch (view) {
    case "overview":
      return [await api("overview")];
    case "market":
      return [await api(arg ? `market?interval=${encodeURIComponent(arg)}` : "market")];
    case "participants": {
      // #participants/page/<n> pages through the households; #participants/<address> adds one.
      const page = arg && arg.startsWith("page/") ? Math.max(1, Number(arg.slice(5)) || 1) : 1;
      const address = arg && !arg.startsWith("page/") ? arg : null;
      return Promise.all([
        api(`participants?limit=${PAGE}&offset=${(page - 1) * PAGE}`),
        address ? api(`participants/${encodeURIComponent(address)}`) : null,
      ]);
    }
    case "payments":
      return [await api("payments")];
    case "audit":
      return [await api("audit")];
    case "invitations":
      return [await api("invitations")];
    case "meters":
      return [await api("meters")];
    default:
      return [null];
  }
}

async function render() {
  if (!state.loggedIn) return;
  const { view, arg } = parseHash();
  const changed = view !== state.view || arg !== state.arg;
  state.view = view;
  state.arg = arg;
  show(view);
  // The newest render wins; the page is busy while any is loading.
  const seq = ++state.seq;
  state.inflight += 1;
  document.querySelector(`[data-view="${view}"]`).setAttribute("aria-busy", "true");
  try {
    await renderView(view, arg, changed, seq);
  } finally {
    state.inflight -= 1;
    if (state.inflight === 0) {
      for (const section of document.querySelectorAll("[aria-busy]")) section.removeAttribute("aria-busy");
    }
  }
}

async function renderView(view, arg, changed, seq) {
  let data;
  try {
    data = await load(view, arg);
  } catch (err) {
    if (err instanceof Unauthenticated) {
      showLogin("Please log in again.");
      return;
    }
    setStatus(`Could not load: ${err.message || err}`, "error");
    return;
  }
  if (seq !== state.seq) return; // a newer render (or another view) took over
  if (view === "overview") {
    setCurrency(data[0].grid.currency);
    $("grid-name").textContent = data[0].grid.name;
    if (state.lastEvent === null) state.lastEvent = data[0].last_event;
    setClock(data[0].clock);
  }
  const content = document.querySelector(`[data-view="${view}"] .content`);
  // Keep open data tables open across live refreshes.
  const open = new Set([...content.querySelectorAll("details[open]")].map((d) => d.dataset.key));
  const scrollY = window.scrollY;
  state.ticks = [];
  const ctx = { go, gridNow, onTick: (fn) => state.ticks.push(fn), api, refresh: render };
  const nodes = RENDERERS[view](...data.slice(0, 1), ctx, ...data.slice(1));
  content.replaceChildren(...nodes);
  for (const d of content.querySelectorAll("details[data-key]")) {
    if (open.has(d.dataset.key)) d.open = true;
  }
  if (!changed) window.scrollTo(0, scrollY);
  state.renders += 1;
  document.body.dataset.renders = String(state.renders);
  state.lastRefresh = performance.now();
}

/** Reload the view shown, soon, at most once a second. */
function scheduleRefresh() {
  if (state.refreshing) {
    state.pending = true;
    return;
  }
  state.refreshing = true;
  const wait = Math.max(REFRESH_DELAY_MS, MIN_REFRESH_GAP_MS - (performance.now() - state.lastRefresh));
  setTimeout(async () => {
    try {
      await render();
    } finally {
      state.refreshing = false;
      if (state.pending) {
        state.pending = false;
        scheduleRefresh();
      }
    }
  }, wait);
}

// --- live --------------------------------------------------------------------------

function setStatus(text, kind) {
  const el = $("live");
  el.textContent = text;
  el.className = `live ${kind}`;
}

function closeSocket() {
  if (state.socket) {
    state.socket.onclose = null;
    state.socket.close();
    state.socket = null;
  }
}

async function connect() {
  closeSocket();
  if (state.lastEvent === null) {
    try {
      state.lastEvent = (await api("overview?hours=1")).last_event;
    } catch (err) {
      if (err instanceof Unauthenticated) return showLogin("Please log in again.");
      return reconnectLater();
    }
  }
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/dashboard/api/stream?since=${state.lastEvent}`);
  state.socket = socket;
  socket.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.error) return;
    if (data.clock) setClock(data.clock);
    if (data.type === "hello") {
      const resumed = state.retry > 0;
      state.retry = 0;
      setStatus("Live", "ok");
      if (resumed) scheduleRefresh();
    } else if (data.type === "events") {
      state.lastEvent = data.last;
      const cleared = data.cleared.length ? `, cleared ${data.cleared.map(when).join(", ")}` : "";
      setStatus(`Live · updated ${when(gridNow())}${cleared}`, "ok");
      scheduleRefresh();
    }
  };
  socket.onclose = (event) => {
    state.socket = null;
    if (event.code === 4401) {
      showLogin("Your session ended; please log in again.");
      return;
    }
    reconnectLater();
  };
}

function reconnectLater() {
  state.retry += 1;
  const seconds = Math.min(15, 2 ** Math.min(state.retry - 1, 4));
  setStatus(`Reconnecting in ${seconds} s…`, "warn");
  setTimeout(() => {
    if (state.loggedIn) connect();
  }, seconds * 1000);
}

function tick() {
  $("grid-clock").textContent = when(gridNow());
  for (const fn of state.ticks) fn();
}

// --- start -------------------------------------------------------------------------

function start() {
  state.loggedIn = true;
  document.body.classList.remove("logged-out");
  $("login").hidden = true;
  $("logout").hidden = false;
  render();
  connect();
}

async function boot() {
  $("login-form").addEventListener("submit", logIn);
  $("logout").addEventListener("click", logOut);
  window.addEventListener("hashchange", () => {
    if (state.loggedIn) render();
  });
  setInterval(tick, 1000);
  const params = new URLSearchParams(location.search);
  const expired = params.get("login") === "expired";
  if (params.has("login")) history.replaceState(null, "", location.pathname + location.hash);
  const session = await api("session");
  if (!session.operator_token_configured) {
    showLogin("This grid has no operator token: set P2P_OPERATOR_TOKEN and restart the server.");
  } else if (session.authenticated) {
    start();
  } else {
    showLogin(expired ? "That login link was used or has expired; enter the operator token." : "");
  }
}

window.addEventListener("error", (e) => setStatus(`Error: ${e.message}`, "error"));
boot();
