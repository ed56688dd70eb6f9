// The fabric section: NVLink rates summed per GPU, InfiniBand/RoCE rates and link state per port; hidden when absent.
import * as fmt from "./format.js";

const $ = (id) => document.getElementById(id);

// One row per GPU; a GPU's rate is shown only when every one of its links has one (as the SDK keys are).
function nvlinkRows(links) {
  const gpus = new Map();
  for (const link of links) {
    const g = gpus.get(link.gpu) || { gpu: link.gpu, links: 0, active: 0, tx: 0, rx: 0 };
    g.links += 1;
    if (link.state === "active") g.active += 1;
    g.tx = fmt.missing(g.tx) || fmt.missing(link.txRate) ? null : g.tx + link.txRate;
    g.rx = fmt.missing(g.rx) || fmt.missing(link.rxRate) ? null : g.rx + link.rxRate;
    gpus.set(link.gpu, g);
  }
  return [...gpus.values()].sort((a, b) => a.gpu - b.gpu)
    .map((g) => [`#${g.gpu}`, `${g.active} / ${g.links}`, fmt.rate(g.tx), fmt.rate(g.rx)]);
}

function portRows(ports) {
  return ports.map((p) => {
    const state = fmt.missing(p.state) ? "–" : p.state;
    const physical = fmt.missing(p.physicalState) ? "" : ` (${p.physicalState.replaceAll("_", " ")})`;
    return [`${p.device}/${p.port}`, p.linkLayer || "–", state + physical, fmt.bits(p.rate),
      fmt.rate(p.txRate), fmt.rate(p.rxRate)];
  });
}

function fill(body, rows) {
  while (body.rows.length > rows.length) body.deleteRow(-1);
  rows.forEach((cells, i) => {
    const tr = body.rows[i] || body.insertRow();
    while (tr.cells.length < cells.length) tr.insertCell();
    cells.forEach((text, k) => { tr.cells[k].textContent = text; });
  });
}

// `fabric` is the snapshot's section: null (no fabric collector ran) or {nvlink, infiniband}, each null or a list.
export function renderFabric(fabric) {
  const links = (fabric && fabric.nvlink) || [];
  const ports = (fabric && fabric.infiniband) || [];
  $("fabric").hidden = links.length === 0 && ports.length === 0;
  $("nvlink").hidden = links.length === 0;
  $("infiniband").hidden = ports.length === 0;
  fill($("nvlink-rows"), nvlinkRows(links));
  fill($("ib-rows"), portRows(ports));
}
