"""Optional DCGM profiling, found at run time: the DCGM install's Python bindings and a reachable host engine.

Besides the GPUs, the reader watches every MIG GPU instance (entity group DCGM_FE_GPU_I) that the host
engine's instance hierarchy lists, keyed by (NVML GPU index, NVML GPU instance id): the pair NVML gives
each MIG device, so the NVIDIA collector can hang the figures on the instance with that MIG UUID.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from .model import MigProfiling, Profiling

BINDINGS_ENV = "TRACKLAB_SYSMON_DCGM_BINDINGS"
HOST_ENV = "TRACKLAB_SYSMON_DCGM_HOST"
DEFAULT_BINDINGS = "/usr/local/dcgm/bindings/python3"  # where DCGM's own packages install them
DEFAULT_HOST = "127.0.0.1"  # nv-hostengine's default address (port 5555)
RETRY_SECONDS = 60.0
HIERARCHY_SECONDS = 60.0  # MIG instances created or destroyed are picked up this often
FE_GPU, FE_GPU_I = 1, 4  # dcgm_fields.DCGM_FE_GPU, DCGM_FE_GPU_I
BLANK = 1e14  # DCGM marks missing values with huge sentinels (DCGM_FP64_BLANK, DCGM_INT64_BLANK)

# DCGM profiling field id -> (Profiling field, scale to its unit): ratios become percent.
FIELDS = (
    (1002, "sm_active", 100.0),
    (1003, "sm_occupancy", 100.0),
    (1004, "tensor_active", 100.0),
    (1005, "dram_active", 100.0),
    (1009, "pcie_tx_bytes", 1.0),
    (1010, "pcie_rx_bytes", 1.0),
    (1011, "nvlink_tx_bytes", 1.0),
    (1012, "nvlink_rx_bytes", 1.0),
)
# DCGM profiling field id -> MigProfiling field (ratios become percent); 1002 and 1005 are watched above.
MIG_FIELDS = ((1001, "graphics_active"), (1002, "sm_active"), (1005, "dram_active"))
WATCHED = tuple(dict.fromkeys([field_id for field_id, _, _ in FIELDS] + [field_id for field_id, _ in MIG_FIELDS]))
GpuInstance = tuple[int, int]  # (NVML GPU index, NVML GPU instance id)


class DcgmProfiler:
    """Reads the profiling fields through DCGM's `DcgmReader`; `reason` says why it is not available."""

    def __init__(
        self,
        bindings: str | None = None,
        host: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bindings = bindings or os.environ.get(BINDINGS_ENV) or DEFAULT_BINDINGS
        self.host = host or os.environ.get(HOST_ENV) or DEFAULT_HOST
        self.reason: str | None = "DCGM has not been tried yet"
        self._reader: Any = None
        self._failed_at: float | None = None
        self._monotonic = monotonic
        self._instances: dict[int, GpuInstance] = {}  # DCGM GPU_I entity id -> its NVML (GPU, instance)
        self._hierarchy_at: float | None = None
        self.mig: dict[GpuInstance, MigProfiling] = {}  # the latest read's figures per MIG GPU instance
        self.mig_reason: str | None = "DCGM has not been tried yet"  # why no MIG instance is watched

    @property
    def available(self) -> bool:
        return self._reader is not None

    def read(self) -> dict[int, Profiling] | None:
        """Latest profiling values per GPU id, or None (with `reason` set) when DCGM is not usable;
        `mig` then holds each MIG GPU instance's figures."""
        if self._reader is None and not self._connect():
            self.mig = {}
            return None
        try:
            self._follow_hierarchy()
            if self._instances:
                latest = self._reader.GetLatestEntityValuesAsFieldIdDict()
                gpus, instances = latest.get(FE_GPU, {}), latest.get(FE_GPU_I, {})
            else:
                gpus, instances = self._reader.GetLatestGpuValuesAsFieldIdDict(), {}
        except Exception as exc:  # the bindings raise their own error types; any of them means "lost"
            self._fail(f"DCGM host engine at {self.host} stopped answering: {type(exc).__name__}: {exc}")
            self.mig = {}
            return None
        self.mig = {
            self._instances[int(entity)]: _mig_profiling(values)
            for entity, values in instances.items() if int(entity) in self._instances
        }
        return {int(gpu): _profiling(values) for gpu, values in gpus.items()}

    def _connect(self) -> bool:
        if self._failed_at is not None and self._monotonic() - self._failed_at < RETRY_SECONDS:
            return False
        try:
            module = _import_reader(self.bindings)
        except ImportError as exc:
            self._fail(f"DCGM Python bindings not found (install DCGM or set {BINDINGS_ENV}): {exc}")
            return False
        try:
            reader = module.DcgmReader(fieldIds=list(WATCHED), updateFrequency=1_000_000, hostname=self.host)
            reader.GetLatestGpuValuesAsFieldIdDict()  # connects to the host engine and watches the fields
            instances = self._list_instances(reader)
            if instances:  # watch them too: a reader over the GPUs plus every GPU instance entity
                reader = _entity_reader(module, reader, instances, self.host)
        except Exception as exc:  # DCGMError and friends come from the bindings, not from us
            self._fail(f"DCGM host engine not reachable at {self.host}: {type(exc).__name__}: {exc}")
            return False
        self._reader, self.reason, self._failed_at = reader, None, None
        self._instances, self._hierarchy_at = instances, self._monotonic()
        return True

    def _follow_hierarchy(self) -> None:
        """Every HIERARCHY_SECONDS, watch again if MIG instances were created or destroyed since."""
        now = self._monotonic()
        if self._hierarchy_at is not None and now - self._hierarchy_at < HIERARCHY_SECONDS:
            return
        self._hierarchy_at = now
        instances = self._list_instances(self._reader)
        if instances == self._instances:
            return
        module = _import_reader(self.bindings)
        if instances:  # one new reader over the GPUs and the instances that exist now
            self._reader = _entity_reader(module, self._reader, instances, self.host)
        else:
            _shutdown(self._reader)
            self._reader = module.DcgmReader(fieldIds=list(WATCHED), updateFrequency=1_000_000, hostname=self.host)
            self._reader.GetLatestGpuValuesAsFieldIdDict()
        self._instances = instances

    def _list_instances(self, reader: Any) -> dict[int, GpuInstance]:
        """The MIG GPU instances to watch; none (with `mig_reason`) when there are none or DCGM cannot list them."""
        try:
            instances = _gpu_instances(reader)
        except Exception as exc:  # e.g. bindings older than MIG support: GPU profiling still works
            self.mig_reason = f"DCGM could not list MIG GPU instances: {type(exc).__name__}: {exc}"
            return {}
        self.mig_reason = None if instances else "DCGM lists no MIG GPU instance"
        return instances

    def _fail(self, reason: str) -> None:
        _shutdown(self._reader)
        self._reader, self.reason, self._failed_at = None, reason, self._monotonic()
        self._instances, self.mig_reason = {}, reason


def _import_reader(bindings: str) -> Any:
    if bindings and os.path.isdir(bindings) and bindings not in sys.path:
        sys.path.append(bindings)  # appended: an installed module of the same name wins
    return importlib.import_module("DcgmReader")


def _gpu_instances(reader: Any) -> dict[int, GpuInstance]:
    """GPU instance entity id -> (NVML GPU index, NVML GPU instance id), from the host engine's MIG hierarchy."""
    agent = importlib.import_module("dcgm_agent")  # beside DcgmReader in the bindings folder
    hierarchy = agent.dcgmGetGpuInstanceHierarchy(reader.m_dcgmHandle.handle)
    return {
        int(entry.entity.entityId): (int(entry.info.nvmlGpuIndex), int(entry.info.nvmlInstanceId))
        for entry in hierarchy.entityList[: hierarchy.count]
        if entry.entity.entityGroupId == FE_GPU_I
    }


def _entity_reader(module: Any, gpus_reader: Any, instances: dict[int, GpuInstance], host: str) -> Any:
    """A reader over every GPU and the given GPU instances, replacing `gpus_reader` (one connection at a time)."""
    structs = importlib.import_module("dcgm_structs")
    gpu_ids = list(gpus_reader.m_dcgmSystem.discovery.GetAllSupportedGpuIds())
    entities = [structs.c_dcgmGroupEntityPair_t(FE_GPU_I, entity) for entity in sorted(instances)]
    _shutdown(gpus_reader)
    reader = module.DcgmReader(fieldIds=list(WATCHED), updateFrequency=1_000_000, hostname=host,
                               gpuIds=gpu_ids, entities=entities)
    reader.GetLatestEntityValuesAsFieldIdDict()
    return reader


def _shutdown(reader: Any) -> None:
    if reader is not None:
        with contextlib.suppress(Exception):  # a reader whose engine is gone may fail to say goodbye
            reader.Shutdown()


def _profiling(values: dict[Any, Any]) -> Profiling:
    return Profiling(**{key: _scaled(values.get(field_id), scale) for field_id, key, scale in FIELDS})


def _mig_profiling(values: dict[Any, Any]) -> MigProfiling:
    return MigProfiling(**{key: _scaled(values.get(field_id), 100.0) for field_id, key in MIG_FIELDS})


def _scaled(value: Any, scale: float) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < BLANK
    return round(float(value) * scale, 3) if ok else None
