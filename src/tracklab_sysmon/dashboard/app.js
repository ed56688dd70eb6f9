// The dashboard: backfill from /api/system/metrics/history, then live from /ws/system-metrics (one subscriber).
import * as fmt from "./format.js";
import { Series } from "./series.js";
import { LineChart, drawCores } from "./charts.js";
import { renderFabric } from "./fabric.js";

const $ = (id) => document.getElementById(id);
const PAGE = 120; // history snapshots per request: a 256-core snapshot is ~50 KB of JSON
const NODES_EVERY_MS = 2000;
const RETRY_MS = [500, 1000, 2000, 5000];
const RENDER_EVERY_MS = 500;

const state = {
  window: 300,
  nodes: new Map(), // nodeId -> {id, local, status, lastSeen, url, latest, series}
  order: [],
  selected: null,
  localId: null,
  info: null,
  charts: {},
  accCount: -1,
  backfilling: null, // live frames for the local node wait here while history is being read
  dirty: false,
  renderedAt: 0,
};

function node(id) {
  let n = state.nodes.get(id);
  if (!n) {
    n = { id, local: false, status: "connecting", lastSeen: null, url: null, latest: null, series: new Series(state.window) };
    state.nodes.set(id, n);
    state.order.push(id);
  }
  return n;
}

function toLogin() { location.replace("/login"); }

// ---- connection -------------------------------------------------------------------------------

function setConnection(text, stateName) {
  const el = $("connection");
  el.textContent = text;
  el.dataset.state = stateName;
}

let attempt = 0;
let everConnected = false;

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws/system-metrics`);
  let live = false;
  ws.onmessage = (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === "info") onInfo(frame.data);
    else if (frame.type === "metrics") {
      if (!live) {
        live = true;
        attempt = 0;
        setConnection("live", "live");
        if (everConnected) backfill(false);
        everConnected = true;
      }
      onMetrics(frame.nodeId, frame.data);
    }
  };
  ws.onclose = () => {
    setConnection("reconnecting…", "reconnecting");
    const delay = RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)];
    attempt += 1;
    setTimeout(connect, delay);
  };
}

function onInfo(info) {
  state.info = info;
  state.localId = info.node_id;
  const n = node(info.node_id);
  n.local = true;
  if (state.selected === null) state.selected = info.node_id;
  if (state.order[0] !== info.node_id) state.order = [info.node_id, ...state.order.filter((id) => id !== info.node_id)];
  renderInfo();
}

function onMetrics(nodeId, snapshot) {
  const n = node(nodeId);
  n.latest = snapshot;
  n.lastSeen = snapshot.timestamp;
  if (n.local) n.status = "up";
  if (n.local && state.backfilling) state.backfilling.push(snapshot);
  else n.series.push(snapshot);
  if (state.selected === null) state.selected = nodeId;
  schedule();
}

// History is kept by the local node only; read it in pages, then replay live frames that came meanwhile.
async function backfill(fresh) {
  const n = node(state.localId);
  if (state.backfilling) return;
  state.backfilling = [];
  const series = fresh ? new Series(state.window) : n.series;
  let since = series.last !== null ? Math.round(series.last * 1000) : Date.now() - state.window * 1000;
  try {
    for (;;) {
      const response = await fetch(`/api/system/metrics/history?since=${since}&limit=${PAGE}`);
      if (response.status === 401) return toLogin();
      if (!response.ok) break;
      const page = await response.json();
      for (const snapshot of page) series.push(snapshot);
      if (page.length < PAGE) break;
      since = page[page.length - 1].timestamp;
    }
  } catch (error) {
    console.warn("history backfill stopped:", error.message);
  } finally {
    for (const snapshot of state.backfilling || []) series.push(snapshot);
    state.backfilling = null;
    n.series = series;
    schedule();
  }
}

async function pollNodes() {
  try {
    const response = await fetch("/api/system/nodes");
    if (response.status === 401) return toLogin();
    if (response.ok) {
      for (const entry of await response.json()) {
        const n = node(entry.nodeId);
        Object.assign(n, { local: entry.local, status: entry.status, lastSeen: entry.lastSeen ?? n.lastSeen, url: entry.url });
      }
    }
  } catch {
    // the service is away: the connection badge already says so
  }
  renderNodes();
}

// ---- rendering ----------------------------------------------------------------------------------

// At most one full redraw per RENDER_EVERY_MS: data may tick faster (--interval 0.1) than eyes need.
function schedule() {
  if (state.dirty) return;
  state.dirty = true;
  const wait = Math.max(0, state.renderedAt + RENDER_EVERY_MS - performance.now());
  setTimeout(() => requestAnimationFrame(render), wait);
}

function render() {
  state.dirty = false;
  state.renderedAt = performance.now();
  renderNodes();
  renderSelected();
  // benchmarks/bench_dashboard.py defines this array to collect each redraw's cost; nothing else does.
  if (Array.isArray(window.dashboardRenderTimes)) window.dashboardRenderTimes.push(performance.now() - state.renderedAt);
}

function shownStatus(n) {
  if (n.status !== "up") return n.status;
  const interval = n.series.interval || 1;
  const late = n.lastSeen !== null && Date.now() - n.lastSeen > Math.max(5000, 5000 * interval);
  return late ? "stale" : "up";
}

function renderNodes() {
  const nav = $("nodes");
  for (const id of state.order) {
    const n = state.nodes.get(id);
    let button = nav.querySelector(`[data-node="${CSS.escape(id)}"]`);
    if (!button) {
      button = document.createElement("button");
      button.type = "button";
      button.dataset.node = id;
      button.innerHTML = '<strong class="name"></strong><span class="status"></span><span class="small"></span>';
      button.querySelector(".name").textContent = id;
      button.addEventListener("click", () => select(id));
      nav.append(button);
    }
    const status = shownStatus(n);
    button.dataset.status = status;
    button.setAttribute("aria-pressed", String(id === state.selected));
    const seen = status === "up" ? "" : ` · last seen ${fmt.ago(n.lastSeen)}`;
    button.querySelector(".status").textContent = `${status}${n.local ? " · local" : ""}${seen}`;
    const s = n.latest || {};
    button.querySelector(".small").textContent =
      `CPU ${fmt.percent(s.cpu ? s.cpu.overall : null)} · Mem ${fmt.percent(s.memory ? s.memory.usage : null)}`;
  }
  const first = nav.firstElementChild;
  if (first && first.dataset.node !== state.order[0]) nav.prepend(nav.querySelector(`[data-node="${CSS.escape(state.order[0])}"]`));
}

function renderInfo() {
  const n = state.nodes.get(state.selected);
  const info = state.info;
  if (n && n.local && info) {
    const memory = fmt.bytes(info.memory_total);
    $("node-info").textContent =
      `${info.platform} · ${info.cpu_model || "CPU"} · ${info.cpu_threads} threads · ${memory} memory · ${info.gpu_count} accelerators`;
  } else {
    $("node-info").textContent = n && n.url ? `peer at ${n.url}` : "";
  }
}

function renderValues(n) {
  const s = n.latest || {};
  const cpu = s.cpu || {};
  const mem = s.memory || {};
  const disk = s.disk || {};
  const net = s.network || {};
  const load = cpu.loadAverage || [null, null, null];
  $("node-title").textContent = n.id;
  $("node").dataset.timestamp = String(s.timestamp ?? "");
  $("cpu-value").textContent = fmt.percent(cpu.overall);
  $("load-value").textContent = load.map((v) => fmt.plain(v)).join(" / ");
  $("memory-value").textContent = `${fmt.bytes(mem.used)} / ${fmt.bytes(mem.total)} (${fmt.percent(mem.usage)})`;
  const swap = mem.swap || {};
  $("swap-value").textContent = `${fmt.bytes(swap.used)} / ${fmt.bytes(swap.total)}`;
  $("disk-value").textContent = `${fmt.rate(disk.ioRead)} / ${fmt.rate(disk.ioWrite)}`;
  $("iops-value").textContent = fmt.perSecond(disk.iops);
  $("net-value").textContent = `${fmt.rate(net.bytesIn)} / ${fmt.rate(net.bytesOut)}`;
  renderAccelerators(s.accelerators || [], n.series.accIds.length);
  renderFabric(s.fabric);
}

// A tick without accelerators (the collector missed its budget) keeps the section: its charts show the gap.
function renderAccelerators(accelerators, known) {
  $("accelerators").hidden = accelerators.length === 0 && known === 0;
  const body = $("acc-rows");
  while (body.rows.length > accelerators.length) body.deleteRow(-1);
  accelerators.forEach((a, i) => {
    const tr = body.rows[i] || body.insertRow();
    while (tr.cells.length < 6) tr.insertCell();
    const memory = a.memory || {};
    const cells = [String(a.id), a.name || a.type, fmt.percent(a.utilization),
      `${fmt.bytes(memory.used)} / ${fmt.bytes(memory.total)}`, fmt.celsius(a.temperature), fmt.watts(a.power)];
    cells.forEach((text, k) => { tr.cells[k].textContent = text; });
  });
}

const CHARTS = [
  ["cpu", ["CPU"], fmt.percent, (s) => [s.cols.cpu], 100],
  ["load", ["1 min", "5 min", "15 min"], (v) => fmt.plain(v), (s) => [s.cols.load1, s.cols.load5, s.cols.load15]],
  ["memory", ["memory", "swap"], fmt.bytes, (s) => [s.cols.memUsed, s.cols.swapUsed]],
  ["disk", ["read", "write"], fmt.rate, (s) => [s.cols.diskRead, s.cols.diskWrite]],
  ["iops", ["IOPS"], fmt.perSecond, (s) => [s.cols.iops]],
  ["net", ["in", "out"], fmt.rate, (s) => [s.cols.netIn, s.cols.netOut]],
];
const ACC_CHARTS = [["acc-util", "util", fmt.percent, 100], ["acc-mem", "mem", fmt.percent, 100],
  ["acc-temp", "temp", fmt.celsius, null], ["acc-power", "power", fmt.watts, null]];

function buildCharts() {
  for (const chart of Object.values(state.charts)) chart.destroy();
  state.charts = {};
  const widths = CHARTS.map(([name]) => $(`chart-${name}`).clientWidth);
  CHARTS.forEach(([name, labels, format, , maxValue], i) => {
    state.charts[name] = new LineChart($(`chart-${name}`), labels, format, state.window, maxValue, widths[i]);
  });
  state.accCount = -1;
}

function buildAcceleratorCharts(series) {
  const labels = series.accIds.map((id) => `#${id}`);
  $("accelerators").hidden = series.accIds.length === 0; // laid out before the widths are read
  const widths = ACC_CHARTS.map(([name]) => $(`chart-${name}`).clientWidth);
  ACC_CHARTS.forEach(([name, , format, maxValue], i) => {
    if (state.charts[name]) state.charts[name].destroy();
    state.charts[name] = new LineChart($(`chart-${name}`), labels, format, state.window, maxValue, widths[i]);
  });
  state.accCount = series.accIds.length;
}

function renderSelected() {
  const n = state.nodes.get(state.selected);
  if (!n) return;
  renderValues(n);
  const { series } = n;
  for (const [name, , , columns] of CHARTS) state.charts[name].update(series.t, columns(series), state.window);
  if (series.accIds.length !== state.accCount) buildAcceleratorCharts(series);
  if (series.accIds.length) {
    for (const [name, field] of ACC_CHARTS) state.charts[name].update(series.t, series.acc[field], state.window);
  }
  const cores = series.coreCount();
  $("cores-count").textContent = cores ? `· ${cores} cores` : "";
  drawCores($("cores-canvas"), series, state.window);
}

// ---- controls -------------------------------------------------------------------------------------

function select(id) {
  state.selected = id;
  buildCharts();
  renderInfo();
  renderNodes();
  renderSelected();
}

function setWindow(seconds) {
  const grew = seconds > state.window;
  state.window = seconds;
  for (const button of document.querySelectorAll("[data-window]")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.window) === seconds));
  }
  for (const n of state.nodes.values()) {
    n.series.window = seconds;
    if (n.series.last !== null) n.series.trim(n.series.last - seconds);
  }
  if (grew && state.localId !== null) backfill(true);
  schedule();
}

function start() {
  for (const button of document.querySelectorAll("[data-window]")) {
    button.addEventListener("click", () => setWindow(Number(button.dataset.window)));
  }
  buildCharts();
  // Follow the system's light/dark switch: chart colours are read from CSS when a chart is built.
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => { buildCharts(); schedule(); });
  // Only a new width re-lays the charts out; the panel's height changes with its contents every tick.
  let width = 0;
  new ResizeObserver(([entry]) => {
    if (Math.round(entry.contentRect.width) === width) return;
    width = Math.round(entry.contentRect.width);
    for (const chart of Object.values(state.charts)) chart.resize();
    schedule();
  }).observe($("node"));
  connect();
  pollNodes();
  setInterval(pollNodes, NODES_EVERY_MS);
  fetchFirstInfo();
}

// The backfill needs the local node's id, which the socket's first frame (info) brings; ask REST first.
async function fetchFirstInfo() {
  const response = await fetch("/api/system/info").catch(() => null);
  if (response && response.status === 401) return toLogin();
  if (!response || !response.ok) return;
  onInfo(await response.json());
  await backfill(true);
}

start();
