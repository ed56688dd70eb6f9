// Numbers with units: binary sizes (MiB), decimal rates (MB/s, link Gb/s), percent, °C, W. null is shown as "–".
const DASH = "–";
const BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
const DECIMAL = ["B/s", "kB/s", "MB/s", "GB/s", "TB/s"];
const BITS = ["b/s", "kb/s", "Mb/s", "Gb/s", "Tb/s"];

function scaled(value, base, units) {
  let i = 0;
  let v = Math.abs(value);
  while (v >= base && i < units.length - 1) { v /= base; i += 1; }
  const digits = i === 0 || v >= 100 ? 0 : 1;
  return `${(Math.sign(value) * v).toFixed(digits)} ${units[i]}`;
}

export const missing = (v) => v === null || v === undefined || Number.isNaN(v);
export const percent = (v) => (missing(v) ? DASH : `${v.toFixed(1)} %`);
export const bytes = (v) => (missing(v) ? DASH : scaled(v, 1024, BINARY));
export const rate = (v) => (missing(v) ? DASH : scaled(v, 1000, DECIMAL));
export const bits = (v) => (missing(v) ? DASH : scaled(v, 1000, BITS)); // link rates: bits/s
export const celsius = (v) => (missing(v) ? DASH : `${v.toFixed(0)} °C`);
export const watts = (v) => (missing(v) ? DASH : `${v.toFixed(1)} W`);
export const perSecond = (v) => (missing(v) ? DASH : `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} /s`);
export const plain = (v, digits = 2) => (missing(v) ? DASH : v.toFixed(digits));

export function ago(ms) {
  if (missing(ms)) return "never seen";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}
