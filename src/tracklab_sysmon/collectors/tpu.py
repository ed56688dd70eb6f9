"""Google TPUs from libtpu's runtime metrics service (gRPC): duty cycle and HBM per device, a deadline per call.

The service exists only while a framework (JAX, PyTorch/XLA) holds the TPUs, so "no answer yet" is
`unavailable`; once it has answered, losing it is this collector's `error` until it answers again.
Without `address`, the collector first looks for a Google TPU on the PCI bus (vendor 0x1ae0 under
`sys_root`) and never loads protobuf on a machine without one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .._sysfs import list_dir, read_text
from ..errors import RpcFailed, SourceError, Unavailable
from ..model import AcceleratorMemory, AcceleratorSample
from ..rates import percent

if TYPE_CHECKING:
    from .._tpu import MetricsClient, Row

GOOGLE_PCI_VENDOR = "0x1ae0"
CALL_SECONDS = 0.5  # each RPC's deadline once the service has answered (in a worker thread)
# Until then each tick asks on the event loop with this deadline: a refused loopback port fails at once, a
# channel in back-off fails without trying, so only a service that accepts and never answers costs this.
PROBE_SECONDS = 0.1
RESCAN_SECONDS = 60.0  # with no TPU on the bus, look again this often
# PCI device id -> TPU generation (v2 and v3 share 0x0027), as tpu-info names them.
_CHIPS = {"0x0027": "v2/v3", "0x005e": "v4", "0x0063": "v5e", "0x0062": "v5p", "0x006f": "v6e", "0x0076": "7x"}
_ADDRESS_HINT = "libtpu serves it only while a framework such as JAX holds the TPU"


def find_tpu_chips(sys_root: str) -> tuple[str, ...]:
    """The generation of every Google TPU on the PCI bus ("v5e"), in bus order; "unknown" for an id not in the table."""
    base = os.path.join(sys_root, "bus/pci/devices")
    found = []
    for entry in sorted(list_dir(base)):
        if (read_text(os.path.join(base, entry, "vendor")) or "").strip() == GOOGLE_PCI_VENDOR:
            found.append(_CHIPS.get((read_text(os.path.join(base, entry, "device")) or "").strip(), "unknown"))
    return tuple(found)


class TpuCollector:
    name = "tpu"

    def __init__(self, sys_root: str = "/sys", *, address: str | None = None,
                 call_seconds: float = CALL_SECONDS) -> None:
        self.sys_root = sys_root
        self.explicit = address is not None  # --tpu-metrics-addr: ask it even with no TPU on this PCI bus
        self.address = address
        self.call_seconds = call_seconds
        self._chips: tuple[str, ...] = ()
        self._name = "Google TPU"  # "TPU v5e" once the bus shows one generation only
        self._scanned_at: float | None = None
        # Per device: the last HBM bytes (used, total) and their record, reused while they repeat (used HBM is asked
        # every few seconds only, so on most ticks only the duty cycle is new).
        self._memory: dict[int, tuple[int | None, int | None, AcceleratorMemory]] = {}
        self._client: MetricsClient | None = None
        self._reached = False

    @property
    def blocking(self) -> bool:
        """In a worker thread once the service has answered; until then the sampler re-checks an unavailable
        collector on the event loop, which the short PROBE_SECONDS deadline keeps cheap."""
        return self._reached

    def collect(self, now: float) -> tuple[AcceleratorSample, ...]:
        self._scan(now)
        if not self._chips and not self.explicit:
            raise Unavailable(f"no Google TPU (PCI vendor {GOOGLE_PCI_VENDOR}) under "
                              f"{os.path.join(self.sys_root, 'bus/pci/devices')}")
        client = self._client or self._connect()
        try:
            readings = client.read(self.call_seconds if self._reached else PROBE_SECONDS, now)
        except RpcFailed as exc:
            if not self._reached:  # never answered yet: absent (no framework holds the TPU), not broken
                raise Unavailable(f"no TPU runtime metrics service answers at {client.address} ({_ADDRESS_HINT}): "
                                  f"{exc.detail}") from None
            raise
        if not readings:
            raise SourceError(f"the TPU runtime metrics service at {client.address} lists no device")
        self._reached = True
        return self._samples(readings)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _scan(self, now: float) -> None:
        if self._chips or (self._scanned_at is not None and now - self._scanned_at < RESCAN_SECONDS):
            return
        self._chips, self._scanned_at = find_tpu_chips(self.sys_root), now
        if len(set(self._chips)) == 1:
            self._name = f"TPU {self._chips[0]}"

    def _connect(self) -> MetricsClient:
        try:
            from .. import _tpu  # protobuf, hpack and hyperframe: the `tpu` extra, loaded only where a TPU is
        except ImportError as exc:
            raise Unavailable(f"protobuf/hpack/hyperframe are not installed ({exc}); "
                              "pip install 'tracklab-sysmon[tpu]'") from None
        self._client = _tpu.MetricsClient(self.address or _tpu.DEFAULT_ADDRESS)
        return self._client

    def _samples(self, readings: list[Row]) -> tuple[AcceleratorSample, ...]:
        """A sample per reading (device, used and total HBM, duty cycle), in one pass: 8 a tick."""
        kept_memory, name, samples = self._memory, self._name, []
        for device, used, total, duty in readings:
            kept = kept_memory.get(device)
            if kept is not None and kept[0] == used and kept[1] == total:
                memory = kept[2]
            else:
                memory = AcceleratorMemory(used=used, total=total, percentage=percent(used, total))
                kept_memory[device] = (used, total, memory)
            samples.append(AcceleratorSample(
                id=device,
                type="tpu",
                name=name,
                utilization=duty,  # TensorCore duty cycle: the share of time the cores were busy
                memory=memory,
                temperature=None,  # the runtime metrics service has no temperature, power or fan
                power=None,
                fan_speed=None,
                vendor="google",
            ))
        return tuple(samples)
