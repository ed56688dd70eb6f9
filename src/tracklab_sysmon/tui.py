"""`tracklab-sysmon top`: a terminal view of a running service (rich), refreshed each second; `q` quits."""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import termios
import time
import tty
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from . import wire
from .model import AcceleratorSample, CoreSample, FabricSample, Snapshot
from .protocol import auth_headers

REFRESH_SECONDS = 1.0
FETCH_TIMEOUT = 2.0
BLOCKS = " ▁▂▃▄▅▆▇█"  # one character per core: its height is the core's usage
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_DECIMAL = ("B/s", "kB/s", "MB/s", "GB/s", "TB/s")
_BITS = ("b/s", "kb/s", "Mb/s", "Gb/s", "Tb/s")
DASH = "\u2013"  # an en dash: what the page shows for a missing value
LABEL_WIDTH = 6  # "Cores " etc.; wrapped core lines are indented by as much


# ---- numbers with units (the dashboard's format.js rules) --------------------------------------------


def _scaled(value: float, base: int, units: tuple[str, ...]) -> str:
    size, unit = abs(value), 0
    while size >= base and unit < len(units) - 1:
        size, unit = size / base, unit + 1
    digits = 0 if unit == 0 or size >= 100 else 1
    return f"{'-' if value < 0 else ''}{size:.{digits}f} {units[unit]}"


def size_text(value: float | None) -> str:
    """Bytes in binary units: `1.5 GiB`."""
    return DASH if value is None else _scaled(value, 1024, _BINARY)


def rate_text(value: float | None) -> str:
    """Bytes per second in decimal units: `12.3 MB/s`."""
    return DASH if value is None else _scaled(value, 1000, _DECIMAL)


def bits_text(value: float | None) -> str:
    """A link rate in bits per second, decimal: `200 Gb/s`."""
    return DASH if value is None else _scaled(value, 1000, _BITS)


def percent_text(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f} %"


def unit_text(value: float | None, unit: str, digits: int = 0) -> str:
    return DASH if value is None else f"{value:.{digits}f} {unit}"


# ---- fetching -------------------------------------------------------------------------------------------


def service_url(url: str | None, portfile: str | None) -> str:
    """The base URL to read: --url, else the `url` a --portfile holds, else the default local service."""
    if url:
        return url.rstrip("/")
    if portfile:
        try:
            with open(portfile, encoding="utf-8") as handle:
                return str(json.load(handle)["url"]).rstrip("/")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read the service URL from portfile {portfile!r}: {exc}") from None
    return "http://127.0.0.1:8080"


def fetch_nodes(base: str, token: str | None) -> list[Snapshot]:
    """GET /api/system/metrics: every node's latest snapshot, the local node first (WireError if malformed)."""
    request = urllib.request.Request(base + "/api/system/metrics", headers=auth_headers(token))
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:
        nodes = json.load(response)
    if not isinstance(nodes, list):
        raise ValueError("the service answered something other than a list of snapshots")
    return [wire.snapshot_from_wire(node) for node in nodes]


# ---- drawing ----------------------------------------------------------------------------------------------


def bar(value: float | None, width: int) -> Text:
    """A horizontal bar for a percentage, green to red."""
    if value is None:
        return Text(" " * width)
    filled = round(max(0.0, min(100.0, value)) / 100 * width)
    style = "green" if value < 60 else "yellow" if value < 85 else "red"
    return Text("█" * filled, style=style) + Text("·" * (width - filled), style="dim")


def core_strip(cores: Sequence[CoreSample], width: int, max_lines: int) -> Text:
    """One block character per core, wrapped to `width` columns and cut to `max_lines` lines."""
    cells = Text()
    shown = min(len(cores), width * max_lines)
    for i, core in enumerate(cores[:shown]):
        usage = core.usage
        if usage is None:
            cells.append("?", style="dim")
        else:
            level = round(max(0.0, min(100.0, usage)) / 100 * (len(BLOCKS) - 1))
            style = "red" if usage >= 85 else "yellow" if usage >= 60 else "green"
            cells.append(BLOCKS[level] if level else "_", style=style)
        if (i + 1) % width == 0 and i + 1 < shown:
            cells.append("\n" + " " * LABEL_WIDTH)
    if shown < len(cores):
        cells.append(f" +{len(cores) - shown} more", style="dim")
    return cells


def _line(label: str, *parts: str | Text) -> Text:
    text = Text(label.ljust(LABEL_WIDTH), style="bold")
    for part in parts:
        text.append_text(part if isinstance(part, Text) else Text(part))
    return text


def node_view(node: Snapshot, width: int, height: int) -> RenderableType:
    """The selected node: CPU, per-core strip, load, memory, swap, disk, network, fabric, accelerators."""
    cpu, mem, disk, net = node.cpu, node.memory, node.disk, node.network
    swap = mem.swap if mem else None
    load: tuple[float | None, ...] = (cpu.load_average if cpu else None) or (None, None, None)
    accelerators = node.accelerators
    overall = cpu.overall if cpu else None
    bar_width = max(10, min(40, width - 40))
    rows: list[RenderableType] = [
        _line("CPU", bar(overall, bar_width), f" {percent_text(overall)}"),
        _line("Load", " / ".join(DASH if v is None else f"{v:.2f}" for v in load)),
        _line("Mem", bar(mem.usage if mem else None, bar_width),
              f" {size_text(mem.used if mem else None)} / {size_text(mem.total if mem else None)}"
              f" ({percent_text(mem.usage if mem else None)})"),
        _line("Swap", bar(swap.percentage if swap else None, bar_width),
              f" {size_text(swap.used if swap else None)} / {size_text(swap.total if swap else None)}"),
        _line("Disk", f"read {rate_text(disk.io_read if disk else None)}  "
                      f"write {rate_text(disk.io_write if disk else None)}  "
                      f"{unit_text(disk.iops if disk else None, 'IOPS')}  "
                      f"used {percent_text(disk.usage if disk else None)}"),
        _line("Net", f"in {rate_text(net.bytes_in if net else None)}  out {rate_text(net.bytes_out if net else None)}"),
    ]
    rows += fabric_lines(node.fabric)
    cores = cpu.cores if cpu else ()
    spare = max(1, height - len(rows) - 4 - (len(accelerators) + 2 if accelerators else 0))
    if cores:
        rows.insert(1, _line("Cores", core_strip(cores, max(8, width - LABEL_WIDTH - 1), spare)))
    if accelerators:
        rows.append(accelerator_table(accelerators))
    return Group(*rows)


def fabric_lines(fabric: FabricSample | None) -> list[Text]:
    """`NVLink` (TX/RX summed per GPU) and `IB` (state, link rate, TX/RX per port) lines; none without either."""
    lines: list[Text] = []
    gpus: dict[int, list[tuple[float | None, float | None]]] = {}
    for link in fabric.nvlink.links if fabric and fabric.nvlink else ():
        gpus.setdefault(link.gpu, []).append((link.tx_rate, link.rx_rate))
    if gpus:
        lines.append(_line("NVLink", " " + "  ".join(
            f"#{gpu} tx {rate_text(_total(r[0] for r in rates))} rx {rate_text(_total(r[1] for r in rates))}"
            for gpu, rates in sorted(gpus.items()))))
    for port in fabric.infiniband.ports if fabric and fabric.infiniband else ():
        lines.append(_line("IB", f"{port.device}/{port.port} {port.state or DASH} {bits_text(port.rate)}  "
                                 f"tx {rate_text(port.tx_rate)} rx {rate_text(port.rx_rate)}"))
    return lines


def _total(values: Iterable[float | None]) -> float | None:
    """The sum, or None while any value is unknown (as the dashboard and the SDK keys do)."""
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def accelerator_table(accelerators: tuple[AcceleratorSample, ...]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", expand=False)
    for name in ("#", "name", "util", "memory", "temp", "power"):
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=24 if name == "name" else None)
    for acc in accelerators:
        table.add_row(
            str(acc.id), acc.name or acc.type, percent_text(acc.utilization),
            f"{size_text(acc.memory.used)} / {size_text(acc.memory.total)}",
            unit_text(acc.temperature, "°C"), unit_text(acc.power, "W", 1),
        )
    return table


def screen(
    base: str, nodes: list[Snapshot], selected: int, error: str | None, width: int, height: int,
) -> RenderableType:
    """The whole screen: a title line, the node tabs, the selected node, and the key help."""
    title = Text(f"tracklab-sysmon top · {base}", style="bold")
    if error:
        problem = Text(f"cannot read the service: {error} (retrying)", style="red")
        return Group(title, problem, Text("q quits", style="dim"))
    tabs = Text()
    for i, node in enumerate(nodes):
        overall = node.cpu.overall if node.cpu else None
        tabs.append(f" {node.node_id} {percent_text(overall)} ", style="reverse" if i == selected else "")
    keys = Text("q quits" + ("  n/tab: next node" if len(nodes) > 1 else ""), style="dim")
    if not nodes:
        return Group(title, tabs, Text(f"node {DASH}", style="bold cyan"), keys)
    chosen = nodes[selected]
    when = time.strftime("%H:%M:%S", time.localtime(chosen.timestamp / 1000))
    header = Text(f"node {chosen.node_id}  at {when}", style="bold cyan")
    return Group(title, tabs, header, node_view(chosen, width, height - 5), keys)


# ---- the loop -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def cbreak(stream: TextIO) -> Iterator[bool]:
    """Keys arrive one by one, unechoed, while inside; yields whether `stream` is a terminal at all."""
    if not stream.isatty():
        yield False
        return
    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def read_key(stream: TextIO, timeout: float) -> str | None:
    """One key pressed within `timeout` seconds, else None."""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        return None
    return os.read(stream.fileno(), 1).decode(errors="replace")


def run_top(base: str, token: str | None, *, stdin: TextIO = sys.stdin) -> int:
    """Draw until `q` (or Ctrl-C); returns the exit status."""
    console = Console()
    selected, deadline = 0, 0.0
    with cbreak(stdin) as keys, Live(console=console, screen=True, auto_refresh=False) as live:
        while True:
            if time.monotonic() >= deadline:
                try:
                    nodes, error = fetch_nodes(base, token), None
                except (OSError, ValueError) as exc:  # URLError is an OSError; the service may come back
                    nodes, error = [], str(getattr(exc, "reason", exc))
                selected = min(selected, max(0, len(nodes) - 1))
                width, height = console.size
                live.update(screen(base, nodes, selected, error, width, height), refresh=True)
                deadline = time.monotonic() + REFRESH_SECONDS
            if not keys:
                time.sleep(max(0.0, deadline - time.monotonic()))
                continue
            key = read_key(stdin, max(0.0, deadline - time.monotonic()))
            if key in ("q", "Q"):
                return 0
            if key in ("n", "\t") and nodes:
                selected, deadline = (selected + 1) % len(nodes), 0.0
