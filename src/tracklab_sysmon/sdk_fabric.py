"""SDK keys for the fabric (NVLink per GPU, InfiniBand/RoCE per port) and MIG instances' DCGM activity."""

from __future__ import annotations

from collections import defaultdict

from .model import AcceleratorSample, FabricSample, NvlinkLink, NvmlDetails
from .rates import total_rate


def fabric_keys(fabric: FabricSample | None, prefix: str, nvlink_gpus: set[int]) -> dict[str, float]:
    """`<prefix>nvlink.<gpu>.txRate`/`.rxRate` for the GPUs in `nvlink_gpus` (bytes/s over all of the GPU's
    links, left out unless every link's rate is known) and `<prefix>infiniband.<device>.<port>.txRate`/`.rxRate`
    (bytes/s)."""
    keys: dict[str, float] = {}
    if fabric is None:
        return keys
    by_gpu: dict[int, list[NvlinkLink]] = defaultdict(list)
    for link in fabric.nvlink.links if fabric.nvlink else ():
        if link.gpu in nvlink_gpus:
            by_gpu[link.gpu].append(link)
    for gpu, links in by_gpu.items():
        _put(keys, f"{prefix}nvlink.{gpu}.txRate", total_rate([link.tx_rate for link in links]))
        _put(keys, f"{prefix}nvlink.{gpu}.rxRate", total_rate([link.rx_rate for link in links]))
    for port in fabric.infiniband.ports if fabric.infiniband else ():
        base = f"{prefix}infiniband.{port.device}.{port.port}"
        _put(keys, f"{base}.txRate", port.tx_rate)
        _put(keys, f"{base}.rxRate", port.rx_rate)
    return keys


def mig_keys(accelerator: AcceleratorSample, base: str) -> dict[str, float]:
    """`<base>mig.<index>.graphicsActive`, `.smActive`, `.dramActive` (%) per MIG instance DCGM profiles."""
    keys: dict[str, float] = {}
    details = accelerator.details
    mig = details.readings.mig if isinstance(details, NvmlDetails) and details.readings else None
    for instance in mig.instances if mig else ():
        if instance.profiling is not None:
            at = f"{base}mig.{instance.index}"
            _put(keys, f"{at}.graphicsActive", instance.profiling.graphics_active)
            _put(keys, f"{at}.smActive", instance.profiling.sm_active)
            _put(keys, f"{at}.dramActive", instance.profiling.dram_active)
    return keys


def _put(keys: dict[str, float], key: str, value: float | None) -> None:
    if value is not None:
        keys[key] = value
