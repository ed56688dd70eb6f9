"""Apple (and other macOS) GPUs from `ioreg -c IOAccelerator`: utilisation and memory without sudo."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import Unavailable
from ..model import AcceleratorMemory, AcceleratorSample, IoregDetails
from ..rates import percent

IOREG = ("ioreg", "-r", "-d", "1", "-w", "0", "-c", "IOAccelerator")
TIMEOUT_SECONDS = 5.0
RECHECK_SECONDS = 60.0  # with no GPU (or no ioreg), run ioreg again only this often
_HEADER = re.compile(r"^\+-o (\S+)\s+<class (\w+)")
_PROPERTY = re.compile(r'^\s*"([^"]*)" = (.*)$')


# ---------------------------------------------------------------- ioreg's value syntax


class _Reader:
    """Recursive-descent reader for one ioreg value: "str", 12, Yes/No, {k=v,...}, (a,...), <hex>."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def value(self) -> Any:
        ch = self.text[self.pos : self.pos + 1]
        if ch == '"':
            return self._string()
        if ch == "{":
            return self._items("}", keyed=True)
        if ch == "(":
            return self._items(")", keyed=False)
        if ch == "<":
            end = self.text.index(">", self.pos)
            inner, self.pos = self.text[self.pos + 1 : end], end + 1
            return inner[1:-1] if inner.startswith('"') and inner.endswith('"') else inner
        return self._bare()

    def _string(self) -> str:
        end = self.text.index('"', self.pos + 1)
        value, self.pos = self.text[self.pos + 1 : end], end + 1
        return value

    def _items(self, close: str, *, keyed: bool) -> Any:
        self.pos += 1
        out: Any = {} if keyed else []
        while self.pos < len(self.text) and self.text[self.pos] != close:
            if keyed:
                key = self._string()
                self.pos += 1  # "="
                out[key] = self.value()
            else:
                out.append(self.value())
            if self.text[self.pos : self.pos + 1] == ",":
                self.pos += 1
        self.pos += 1
        return out

    def _bare(self) -> Any:
        match = re.compile(r"[^,}\)]*").match(self.text, self.pos)
        token = match.group(0).strip() if match else ""
        self.pos = match.end() if match else len(self.text)
        if token in ("Yes", "No"):
            return token == "Yes"
        try:
            return int(token)
        except ValueError:
            return token


def parse_ioreg(text: str) -> list[dict[str, Any]]:
    """One dict of properties per `+-o` entry; `"__class__"` holds the entry's class name."""
    entries: list[dict[str, Any]] = []
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            entries.append({"__class__": header.group(2)})
            continue
        prop = _PROPERTY.match(line)
        if prop and entries:
            try:
                entries[-1][prop.group(1)] = _Reader(prop.group(2).strip()).value()
            except (ValueError, IndexError):
                entries[-1][prop.group(1)] = None  # one unreadable property never loses the device
    return entries


# ---------------------------------------------------------------- records


def samples_from_ioreg(text: str, memory_total: int | None = None) -> tuple[AcceleratorSample, ...]:
    """Accelerator samples from ioreg text; `memory_total` is the unified memory size on Apple Silicon."""
    return tuple(_sample(i, entry, memory_total) for i, entry in enumerate(parse_ioreg(text)))


def _sample(index: int, entry: dict[str, Any], memory_total: int | None) -> AcceleratorSample:
    stats = entry.get("PerformanceStatistics")
    stats = stats if isinstance(stats, dict) else {}
    apple = str(entry.get("__class__", "")).startswith("AGX")
    vram_used, vram_free = _num(stats, "vramUsedBytes"), _num(stats, "vramFreeBytes")
    used: int | None
    if vram_used is not None:  # a discrete GPU in an Intel Mac has its own memory
        used, total = int(vram_used), int(vram_used + vram_free) if vram_free is not None else None
    else:
        used = _int(_num(stats, "In use system memory"))
        total = memory_total if apple else None
    return AcceleratorSample(
        id=index,
        type="gpu",
        name=_text(entry.get("model")) or _text(entry.get("IOClass")) or entry.get("__class__"),
        utilization=_num(stats, "Device Utilization %"),
        memory=AcceleratorMemory(used=used, total=total, percentage=percent(used, total)),
        temperature=_num(stats, "Temperature(C)"),
        power=_num(stats, "Total Power(W)"),
        fan_speed=_num(stats, "Fan Speed(%)"),
        vendor="apple" if apple else _vendor(str(entry.get("__class__", ""))),
        uuid=None,
        details=IoregDetails(
            io_class=str(entry["__class__"]),
            renderer_utilization=_num(stats, "Renderer Utilization %"),
            tiler_utilization=_num(stats, "Tiler Utilization %"),
            allocated_memory=_int(_num(stats, "Alloc system memory")),
            core_count=_int(_num(entry, "gpu-core-count")),
        ),
    )


def _vendor(io_class: str) -> str | None:
    lowered = io_class.lower()
    return next((v for v in ("amd", "intel", "nvidia") if v in lowered), None)


def _num(mapping: dict[str, Any], key: str) -> float | None:
    value = mapping.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: float | None) -> int | None:
    return int(value) if value is not None else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# ---------------------------------------------------------------- collector


class AppleCollector:
    name = "apple"
    blocking = True  # runs a subprocess

    def __init__(
        self,
        *,
        command: Sequence[str] = IOREG,
        platform: str = sys.platform,
        memory_total: Callable[[], int | None] | None = None,
    ) -> None:
        self.command = tuple(command)
        self.platform = platform
        self._memory_total = memory_total or _unified_memory
        self._unavailable: tuple[str, float] | None = None  # the last "no GPU" reason and when

    def collect(self, now: float) -> tuple[AcceleratorSample, ...]:
        if self.platform != "darwin":
            raise Unavailable("ioreg GPU statistics exist only on macOS")
        # Once unavailable, the sampler re-checks inline on the event loop: ioreg (up to 5 s) must not
        # run there every tick, so the saved answer stands until RECHECK_SECONDS have passed.
        if self._unavailable is not None and now - self._unavailable[1] < RECHECK_SECONDS:
            raise Unavailable(self._unavailable[0])
        try:
            samples = self._run()
        except Unavailable as exc:
            self._unavailable = (str(exc), now)
            raise
        self._unavailable = None
        return samples

    def _run(self) -> tuple[AcceleratorSample, ...]:
        try:
            done = subprocess.run(self.command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=True)
        except FileNotFoundError:
            raise Unavailable(f"{self.command[0]} not found") from None
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{self.command[0]} failed: {exc}") from None
        samples = samples_from_ioreg(done.stdout, self._memory_total())
        if not samples:
            raise Unavailable("ioreg lists no IOAccelerator")
        return samples


def _unified_memory() -> int | None:
    import psutil  # only on macOS, once per tick, for the unified memory size

    return int(psutil.virtual_memory().total)
