// A node's samples over the chosen window, column by column (what uPlot draws), trimmed as time moves on.
export const NO_CORE = 255; // per-core usage is stored as whole percent in a byte; this marks null

const COLUMNS = ["cpu", "load1", "load5", "load15", "memUsed", "swapUsed", "diskRead", "diskWrite", "iops", "netIn", "netOut"];
const ACC_FIELDS = ["util", "mem", "temp", "power"];

function row(s) {
  const cpu = s.cpu || {};
  const load = cpu.loadAverage || [];
  const mem = s.memory || {};
  const disk = s.disk || {};
  const net = s.network || {};
  return {
    cpu: cpu.overall ?? null, load1: load[0] ?? null, load5: load[1] ?? null, load15: load[2] ?? null,
    memUsed: mem.used ?? null, swapUsed: mem.swap ? mem.swap.used ?? null : null,
    diskRead: disk.ioRead ?? null, diskWrite: disk.ioWrite ?? null, iops: disk.iops ?? null,
    netIn: net.bytesIn ?? null, netOut: net.bytesOut ?? null,
  };
}

function coreBytes(cores) {
  const out = new Uint8Array(cores.length);
  for (let i = 0; i < cores.length; i += 1) {
    const u = cores[i].usage;
    out[i] = u === null || u === undefined ? NO_CORE : Math.round(Math.min(100, Math.max(0, u)));
  }
  return out;
}

export class Series {
  constructor(windowSeconds) {
    this.window = windowSeconds;
    this.t = [];
    this.cols = Object.fromEntries(COLUMNS.map((name) => [name, []]));
    this.cores = [];
    this.accIds = []; // accelerator ids in first-seen order
    this.acc = {}; // field -> one array per accelerator
    for (const f of ACC_FIELDS) this.acc[f] = [];
    this.interval = null;
  }

  get last() { return this.t.length ? this.t[this.t.length - 1] : null; }

  // Add one snapshot; an older or repeated one is ignored. A pause longer than 3 intervals gets a gap.
  push(snapshot) {
    const t = snapshot.timestamp / 1000;
    const last = this.last;
    if (last !== null && t <= last) return false;
    if (last !== null) {
      const step = t - last;
      if (this.interval !== null && step > 3 * this.interval) this.pushRow(last + this.interval, null, new Uint8Array(0), []);
      else this.interval = this.interval === null ? step : 0.8 * this.interval + 0.2 * step;
    }
    const cores = snapshot.cpu && snapshot.cpu.cores ? coreBytes(snapshot.cpu.cores) : new Uint8Array(0);
    this.pushRow(t, row(snapshot), cores, snapshot.accelerators || []);
    this.trim(t - this.window);
    return true;
  }

  pushRow(t, values, cores, accelerators) {
    this.t.push(t);
    for (const name of COLUMNS) this.cols[name].push(values ? values[name] : null);
    this.cores.push(cores);
    for (const a of accelerators) {
      if (!this.accIds.includes(a.id)) {
        this.accIds.push(a.id);
        for (const f of ACC_FIELDS) this.acc[f].push(new Array(this.t.length - 1).fill(null));
      }
    }
    const byId = new Map(accelerators.map((a) => [a.id, a]));
    this.accIds.forEach((id, i) => {
      const a = byId.get(id);
      this.acc.util[i].push(a ? a.utilization ?? null : null);
      this.acc.mem[i].push(a && a.memory ? a.memory.percentage ?? null : null);
      this.acc.temp[i].push(a ? a.temperature ?? null : null);
      this.acc.power[i].push(a ? a.power ?? null : null);
    });
  }

  trim(oldest) {
    let n = 0;
    while (n < this.t.length && this.t[n] < oldest) n += 1;
    if (n === 0) return;
    this.t.splice(0, n);
    for (const name of COLUMNS) this.cols[name].splice(0, n);
    this.cores.splice(0, n);
    for (const f of ACC_FIELDS) for (const column of this.acc[f]) column.splice(0, n);
  }

  coreCount() {
    for (let i = this.cores.length - 1; i >= 0; i -= 1) if (this.cores[i].length) return this.cores[i].length;
    return 0;
  }
}
