// Drawing: uPlot line charts (null = gap) and the per-core heat strip on a canvas (one row per core).
import { NO_CORE } from "./series.js";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#bcbd22", "#7f7f7f"];
const HEIGHT = 160;

function cssColor(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

// A time-series chart inside `figure`; `series` are [label, formatter] pairs after the time column.
function clock(seconds, withSeconds) {
  const d = new Date(seconds * 1000);
  const parts = [d.getHours(), d.getMinutes(), ...(withSeconds ? [d.getSeconds()] : [])];
  return parts.map((n) => String(n).padStart(2, "0")).join(":");
}

// Every metric drawn is >= 0; percentages span 0-100 so a flat line reads right at a glance.
const yRange = (maxValue) => (u, min, max) => [0, maxValue ?? (max > 0 ? max * 1.1 : 1)];

export class LineChart {
  // `width`: read by the caller for all charts at once, so building ten charts forces one layout, not ten.
  constructor(figure, labels, format, windowSeconds, maxValue = null, width = figure.clientWidth) {
    this.figure = figure;
    this.window = windowSeconds;
    this.lastT = 0;
    const axis = { stroke: cssColor("--muted"), grid: { stroke: cssColor("--line"), width: 1 }, ticks: { show: false } };
    const opts = {
      width: Math.max(200, width),
      height: HEIGHT,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true, range: () => [this.lastT - this.window, this.lastT] }, y: { range: yRange(maxValue) } },
      axes: [
        { ...axis, space: 70, values: (u, splits) => splits.map((v) => clock(v, this.window <= 300)) },
        { ...axis, size: 70, values: (u, splits) => splits.map((v) => format(v)) },
      ],
      series: [{}, ...labels.map((label, i) => ({
        label, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false, value: (u, v) => format(v),
      }))],
    };
    this.plot = new uPlot(opts, [[], ...labels.map(() => [])], figure);
  }

  update(t, columns, windowSeconds) {
    this.window = windowSeconds;
    this.lastT = t.length ? t[t.length - 1] : Date.now() / 1000;
    this.plot.setData([t, ...columns]);
    this.figure.dataset.points = String(t.length);
    this.figure.dataset.last = String(Math.round(this.lastT * 1000));
    this.figure.dataset.values = JSON.stringify(columns.map((c) => (c.length ? c[c.length - 1] : null))); // newest
  }

  resize() { this.plot.setSize({ width: Math.max(200, this.figure.clientWidth), height: HEIGHT }); }

  destroy() { this.plot.destroy(); }
}

// 0..100 % to a colour (dark blue, blue, yellow, red), packed as little-endian RGBA for a Uint32 view.
const STOPS = [[0x2b, 0x3a, 0x67], [0x3b, 0x8b, 0xba], [0xf0, 0xc0, 0x5a], [0xd7, 0x30, 0x1f]];
const HEAT = new Uint32Array(256);
for (let p = 0; p <= 100; p += 1) {
  const x = (p / 100) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const f = x - i;
  const [r, g, b] = [0, 1, 2].map((k) => Math.round(STOPS[i][k] + f * (STOPS[i + 1][k] - STOPS[i][k])));
  HEAT[p] = (255 << 24 | b << 16 | g << 8 | r) >>> 0;
}
HEAT[NO_CORE] = 0; // transparent: no sample is a gap, not 0 %

// Columns are time buckets across the window (the newest sample in each wins), rows are cores.
export function drawCores(canvas, series, windowSeconds) {
  const cores = series.coreCount();
  const figure = canvas.parentElement;
  figure.dataset.cores = String(cores);
  if (!cores) return;
  const columns = Math.max(1, Math.min(1200, Math.round(canvas.clientWidth || 600)));
  if (canvas.width !== columns || canvas.height !== cores) {
    canvas.width = columns;
    canvas.height = cores;
    canvas.style.height = `${Math.min(256, Math.max(64, cores * 4))}px`;
  }
  const ctx = canvas.getContext("2d");
  if (!canvas.image || canvas.image.width !== columns || canvas.image.height !== cores) {
    canvas.image = ctx.createImageData(columns, cores); // kept: no 1 MB allocation per redraw
  }
  const { image } = canvas;
  const pixels = new Uint32Array(image.data.buffer);
  pixels.fill(0);
  const end = series.last;
  const start = end - windowSeconds;
  const { t } = series;
  const column = (time) => Math.floor(((time - start) / windowSeconds) * (columns - 1));
  for (let s = 0; s < t.length; s += 1) {
    const from = Math.max(0, column(t[s]));
    const next = s + 1 < t.length ? column(t[s + 1]) : from + 1;
    if (next <= from) continue; // a later sample owns this column: at most `columns` samples are drawn
    const row = series.cores[s];
    const to = Math.min(columns, next);
    for (let k = 0; k < row.length && k < cores; k += 1) pixels.fill(HEAT[row[k]], k * columns + from, k * columns + to);
  }
  ctx.putImageData(image, 0, 0);
  figure.dataset.last = String(Math.round(end * 1000));
}

