// miniqmt-lab engine page: plain script, no build step. Redraws when the engine's version moves
// (server-sent events, read with fetch so the token travels in a header; a 1 s version poll otherwise).
"use strict";

const TOKEN_KEY = "miniqmt-lab.token";
const SHOWN_ROWS = 200;
const POLL_MS = 1000;
const STREAM_RETRY_MS = 15000;
const MIN_REDRAW_MS = 250; // a fast replay moves the version many times a second: redraw at most this often

const state = {
  token: "",
  status: null,
  shownVersion: -1,
  latestVersion: 0,
  epoch: "",
  trades: { rows: new Map(), cursor: 0 },
  signals: { rows: new Map(), cursor: 0 },
  refreshing: false,
  again: false,
  pollTimer: null,
  watching: false,
};

const $ = (id) => document.getElementById(id);

// -- token ---------------------------------------------------------------------------------------------

function takeToken() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    localStorage.setItem(TOKEN_KEY, fromUrl);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  state.token = localStorage.getItem(TOKEN_KEY) || "";
}

function needToken() {
  localStorage.removeItem(TOKEN_KEY);
  state.token = "";
  $("main").hidden = true;
  $("login").hidden = false;
  setBanner(null);
}

// -- HTTP ------------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, error, message) {
    super(message);
    this.status = status;
    this.error = error;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json" };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const reply = await fetch(path, init);
  let data = null;
  try { data = await reply.json(); } catch (_) { data = null; }
  if (reply.status === 401) {
    needToken();
  }
  if (!reply.ok) {
    const error = (data && data.error) || `http_${reply.status}`;
    const message = (data && data.message) || reply.statusText;
    throw new ApiError(reply.status, error, message);
  }
  return data;
}

// -- formatting ---------------------------------------------------------------------------------------------

const money = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("zh-CN",
  { minimumFractionDigits: 2, maximumFractionDigits: 2 }));
const price = (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(2));
const integer = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("zh-CN"));
const percent = (v) => (v === null || v === undefined ? "–" : `${v > 0 ? "+" : ""}${(v * 100).toFixed(2)}%`);
const signClass = (v) => (v > 0 ? "gain" : v < 0 ? "loss" : "");
const sideClass = (v) => (v === "BUY" ? "buy" : "sell");
const shortTime = (text) => (text ? String(text).replace("T", " ").slice(0, 19) : "–");

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fillTable(id, rows, makeRow, emptyText) {
  const body = $(id).querySelector("tbody");
  const frag = document.createDocumentFragment();
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell(emptyText, "empty");
    td.colSpan = $(id).querySelectorAll("thead th").length;
    tr.appendChild(td);
    frag.appendChild(tr);
  }
  for (const row of rows) {
    frag.appendChild(makeRow(row));
  }
  body.replaceChildren(frag);
}

function row(cells, cls) {
  const tr = document.createElement("tr");
  if (cls) tr.className = cls;
  for (const td of cells) tr.appendChild(td);
  return tr;
}

// -- drawing ------------------------------------------------------------------------------------------------

function setBanner(snap) {
  const banner = $("banner");
  if (!snap) {
    banner.className = "banner waiting";
    $("mode").textContent = "not connected";
    $("account").textContent = "";
    return;
  }
  const live = snap.mode === "live";
  banner.className = `banner ${live ? "live" : "paper"}`;
  $("mode").textContent = live ? "LIVE — real orders to a real account" : "PAPER — simulated, no real orders";
  const account = snap.broker.account ? `account ${snap.broker.account}` : "";
  $("account").textContent = [snap.broker.name, account].filter(Boolean).join(" · ");
}

function drawStatus(snap) {
  setBanner(snap);
  const engineState = $("engine-state");
  engineState.textContent = snap.running ? "RUNNING" : "STOPPED";
  engineState.className = snap.running ? "running" : "stopped";
  const trading = $("trading-state");
  trading.textContent = snap.trading_state.toUpperCase();
  trading.className = snap.trading_state;
  const broker = $("broker-state");
  broker.textContent = snap.broker.connected ? "connected" : "disconnected";
  broker.className = snap.broker.connected ? "ok" : "disconnected";
  $("clock").textContent = shortTime(snap.time);
  $("state-reason").textContent = snap.state_reason ? `state reason: ${snap.state_reason}` : "";
  $("last-error").textContent = snap.last_error ? `last error: ${snap.last_error}` : "";
  $("cash").textContent = money(snap.cash);
  $("total-asset").textContent = money(snap.total_asset);
  $("btn-start").disabled = snap.running;
  $("btn-stop").disabled = !snap.running;
  $("auto-trading").checked = snap.auto_trading;
  if (document.activeElement !== $("state-select")) $("state-select").value = snap.trading_state;
  $("version").textContent = String(snap.version);

  $("positions-count").textContent = `${snap.positions.length}`;
  fillTable("positions", snap.positions, (p) => row([
    cell(p.stock_code, "l"), cell(p.stock_name || "", "l"), cell(integer(p.volume)), cell(integer(p.available)),
    cell(price(p.cost)), cell(price(p.price)), cell(percent(p.profit_ratio), signClass(p.profit_ratio)),
    cell(money(p.market_value)), cell(price(p.stop_loss_price)), cell(price(p.next_grid_price)),
    cell(price(p.dynamic_exit_level)), cell(price(p.high)),
  ]), "no positions");

  const now = Date.now() / 1000;
  fillTable("threads", snap.threads, (t) => row([
    cell(t.name, "l"), cell(t.state, "l"), cell(t.alive ? "✓" : "✖", t.alive ? "ok" : "bad"),
    cell(t.last_heartbeat ? `${Math.max(0, now - t.last_heartbeat).toFixed(1)} s ago` : "–"),
    cell(String(t.restarts), t.restarts ? "bad" : ""),
  ]), "no threads yet (engine not started)");
}

function drawRecords() {
  const trades = [...state.trades.rows.values()].sort((a, b) => (b.time < a.time ? -1 : b.time > a.time ? 1
    : b.seq - a.seq)).slice(0, SHOWN_ROWS);
  $("trades-count").textContent = `${state.trades.rows.size}`;
  fillTable("trades", trades, (t) => row([
    cell(shortTime(t.time), "l"), cell(t.stock_code, "l"), cell(t.side, `l ${sideClass(t.side)}`), cell(price(t.price)),
    cell(integer(t.volume)), cell(money(t.amount)), cell(money(t.commission)), cell(t.rule, "l"),
  ]), "no trades yet");

  const signals = [...state.signals.rows.values()].sort((a, b) => b.seq - a.seq).slice(0, SHOWN_ROWS);
  $("signals-count").textContent = `${state.signals.rows.size}`;
  fillTable("signals", signals, (s) => row([
    cell(shortTime(s.time), "l"), cell(s.stock_code, "l"), cell(s.rule, "l"), cell(s.side, `l ${sideClass(s.side)}`),
    cell(price(s.price)), cell(integer(s.volume)), cell(s.outcome, "l"), cell(s.message || "", "msg"),
  ], s.outcome === "executed" ? "executed" : s.outcome === "partially_executed" ? "" : "faded"), "no signals yet");
}

// -- reading -------------------------------------------------------------------------------------------------

async function readRecords(path, kept) {
  let since = kept.cursor;
  let cursor = null;
  for (;;) {
    const page = await api("GET", `${path}?since=${since}&limit=2000`);
    if (page.epoch !== state.epoch) {
      // another server: start the records over
      state.epoch = page.epoch;
      state.trades = { rows: new Map(), cursor: 0 };
      state.signals = { rows: new Map(), cursor: 0 };
      return false;
    }
    for (const r of page.rows) kept.rows.set(r.seq, r);
    if (cursor === null && page.next < page.last) cursor = page.next;
    since = page.last;
    if (!page.more) break;
  }
  kept.cursor = cursor === null ? since : cursor;
  // keep memory bounded on long runs: the page shows the newest rows only
  if (kept.rows.size > 4 * SHOWN_ROWS) {
    const keys = [...kept.rows.keys()].sort((a, b) => a - b);
    for (const key of keys.slice(0, keys.length - 2 * SHOWN_ROWS)) {
      if (key <= kept.cursor) kept.rows.delete(key);
    }
  }
  return true;
}

async function refresh() {
  if (state.refreshing) {
    state.again = true;
    return;
  }
  state.refreshing = true;
  try {
    for (let first = true; first || state.again || state.latestVersion > state.shownVersion; first = false) {
      if (!first) await new Promise((resolve) => setTimeout(resolve, MIN_REDRAW_MS));
      state.again = false;
      const snap = await api("GET", "/api/status");
      if (!state.epoch) state.epoch = snap.epoch;
      state.status = snap;
      state.shownVersion = snap.version;
      drawStatus(snap);
      if (!(await readRecords("/api/trades", state.trades))) state.again = true;
      else if (!(await readRecords("/api/signals", state.signals))) state.again = true;
      drawRecords();
    }
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) {
      $("control-result").textContent = `cannot read the engine: ${err.message}`;
    }
  } finally {
    state.refreshing = false;
  }
}

function seeVersion(version) {
  state.latestVersion = version;
  if (version !== state.shownVersion) refresh();
}

// -- watching the version ---------------------------------------------------------------------------------------

async function watchStream() {
  const reply = await fetch("/api/events", { headers: { Authorization: `Bearer ${state.token}` } });
  if (!reply.ok || !reply.body) throw new Error(`events: ${reply.status}`);
  stopPolling();
  $("updates").textContent = "server-sent events";
  const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("");
      if (data) seeVersion(JSON.parse(data).version);
    }
  }
  throw new Error("events ended");
}

function startPolling() {
  if (state.pollTimer !== null) return;
  $("updates").textContent = "1 s version poll";
  state.pollTimer = setInterval(async () => {
    try {
      const v = await api("GET", "/api/version");
      seeVersion(v.version);
    } catch (_) { /* the server may be restarting: the next poll tries again */ }
  }, POLL_MS);
}

function stopPolling() {
  if (state.pollTimer !== null) clearInterval(state.pollTimer);
  state.pollTimer = null;
}

async function watch() {
  if (state.watching) return;
  state.watching = true;
  while (state.token) {
    try {
      await watchStream();
    } catch (_) {
      startPolling();
      await new Promise((resolve) => setTimeout(resolve, STREAM_RETRY_MS));
    }
  }
  stopPolling();
  state.watching = false;
}

// -- control -------------------------------------------------------------------------------------------------

const isLive = () => state.status && state.status.mode === "live";

function confirmLive(what) {
  if (!isLive()) return { ok: true, body: {} };
  const ok = window.confirm(`LIVE ACCOUNT: ${what}\n\nThis can send real orders with real money. Go ahead?`);
  return { ok, body: ok ? { confirm: true } : {} };
}

async function control(resultId, action) {
  const out = $(resultId);
  out.className = "row";
  try {
    const text = await action();
    if (text) out.textContent = text;
  } catch (err) {
    out.className = "row error";
    out.textContent = err instanceof ApiError ? `${err.error}: ${err.message}` : String(err);
  }
  refresh();
}

function wire() {
  $("btn-start").addEventListener("click", () => control("control-result", async () => {
    const c = confirmLive("start the engine (with auto trading it trades by itself)");
    if (!c.ok) return "start cancelled";
    await api("POST", "/api/engine/start", c.body);
    return "engine started";
  }));
  $("btn-stop").addEventListener("click", () => control("control-result", async () => {
    await api("POST", "/api/engine/stop", {});
    return "engine stopped";
  }));
  $("auto-trading").addEventListener("change", (event) => control("control-result", async () => {
    const on = event.target.checked;
    const c = on ? confirmLive("switch auto trading ON") : { ok: true, body: {} };
    if (!c.ok) {
      event.target.checked = false;
      return "auto trading stays off";
    }
    await api("POST", "/api/auto_trading", { on, ...c.body });
    return `auto trading ${on ? "on" : "off"}`;
  }));
  $("btn-state").addEventListener("click", () => control("control-result", async () => {
    const target = $("state-select").value;
    const c = target === "halted" ? { ok: true, body: {} } : confirmLive(`set trading ${target.toUpperCase()}`);
    if (!c.ok) return "trading state unchanged";
    await api("POST", "/api/trading_state", { state: target, reason: $("state-reason-input").value, ...c.body });
    return `trading ${target}`;
  }));
  $("order-form").addEventListener("submit", (event) => {
    event.preventDefault();
    control("order-result", async () => {
      const side = $("order-side").value;
      const body = { side, stock_code: $("order-code").value.trim(), volume: Number($("order-volume").value) };
      const limit = $("order-price").value;
      if (limit) body.price = Number(limit);
      const c = confirmLive(`${side} ${body.volume} ${body.stock_code}`);
      if (!c.ok) return "order cancelled";
      const reply = await api("POST", "/api/orders", { ...body, ...c.body });
      return `order ${reply.order_id} sent: ${side} ${body.volume} ${body.stock_code}`;
    });
  });
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, $("login-token").value.trim());
    start();
  });
  $("docs-link").addEventListener("click", (event) => {
    event.preventDefault();
    window.open(`/docs?token=${encodeURIComponent(state.token)}`, "_blank", "noopener,noreferrer");
  });
}

async function start() {
  takeToken();
  if (!state.token) {
    needToken();
    return;
  }
  $("login").hidden = true;
  $("main").hidden = false;
  await refresh();
  if (state.token) watch();
}

wire();
start();
