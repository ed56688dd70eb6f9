"""Experiment logging with system metrics: a background-refreshed cache, `init`/`Run`, `wrap_log`."""

from __future__ import annotations

import functools
import http.client
import inspect
import logging
import math
import os
import pathlib
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import orjson

from . import wire
from .client import default_token
from .errors import ConfigError, SysmonError, WireError
from .model import AcceleratorSample, Snapshot
from .protocol import auth_headers
from .scopes import SCOPES, container_values, run_tree, run_values, visible_devices
from .sdk_energy import EnergyBetweenLogs, energy_totals
from .sdk_fabric import fabric_keys, mig_keys

log = logging.getLogger(__name__)
RUN_DIR_ENV = "TRACKLAB_SYSMON_DIR"
DEFAULT_RUN_DIR = "tracklab-runs"
_WINDOW = 10_000  # samples kept for aggregation between two log calls (hours at 1 Hz)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class SystemMetricsConfig:
    """How the SDK gathers system metrics; the refresh thread polls every `cache_duration` s."""

    enabled: bool = True
    service_url: str = "http://localhost:8080"
    include_gpu: bool = True
    cache_duration: float = 1.0
    timeout: float = 2.0  # one HTTP request of the refresh thread
    node_id: str | None = None  # None: the service's own (first) node
    prefix: str = "system/"
    include_cores: bool = False  # adds system/cpu.core.<i>.usage
    aggregate: bool = False  # log mean of the samples since the last log, plus .min and .max
    start_service: bool = False  # start a SystemMonitor when service_url does not answer
    token: str | None = field(default=None, repr=False)  # None: $TRACKLAB_SYSMON_TOKEN, if set
    scope: str = "host"  # host: the machine; container: the cgroup's figures; run: this process tree (scopes.py)

    def __post_init__(self) -> None:
        if not math.isfinite(self.cache_duration) or self.cache_duration <= 0:
            raise ConfigError(f"cache_duration must be > 0 s, got {self.cache_duration}")
        if not math.isfinite(self.timeout) or self.timeout <= 0:
            raise ConfigError(f"timeout must be > 0 s, got {self.timeout}")
        if not self.service_url.startswith(("http://", "https://")):
            raise ConfigError(f"service_url must start with http:// or https://, got {self.service_url!r}")
        if self.scope not in SCOPES:
            raise ConfigError(f"scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")


# -- flattening ---------------------------------------------------------------------------------

Value = int | float | None  # a reading as the record holds it; None: not available (left out)

# (SDK key after the prefix, getter on the snapshot). The keys are the public contract: never renamed.
_SCALARS: tuple[tuple[str, Callable[[Snapshot], Value]], ...] = (
    ("cpu.overall", lambda s: s.cpu.overall if s.cpu else None),
    ("cpu.temperature", lambda s: s.cpu.temperature if s.cpu else None),
    ("memory.usage", lambda s: s.memory.usage if s.memory else None),
    ("memory.used", lambda s: s.memory.used if s.memory else None),
    ("memory.swap.percentage", lambda s: s.memory.swap.percentage if s.memory else None),
    ("disk.usage", lambda s: s.disk.usage if s.disk else None),
    ("disk.ioRead", lambda s: s.disk.io_read if s.disk else None),
    ("disk.ioWrite", lambda s: s.disk.io_write if s.disk else None),
    ("disk.iops", lambda s: s.disk.iops if s.disk else None),
    ("network.bytesIn", lambda s: s.network.bytes_in if s.network else None),
    ("network.bytesOut", lambda s: s.network.bytes_out if s.network else None),
)
# (SDK key after `<type>.<id>.`, getter on one accelerator).
_ACCELERATOR_FIELDS: tuple[tuple[str, Callable[[AcceleratorSample], Value]], ...] = (
    ("utilization", lambda a: a.utilization),
    ("memory.percentage", lambda a: a.memory.percentage),
    ("memory.used", lambda a: a.memory.used),
    ("temperature", lambda a: a.temperature),
    ("power", lambda a: a.power),
)


def flatten_snapshot(
    snapshot: Snapshot | Mapping[str, Any],
    *,
    prefix: str = "system/",
    include_gpu: bool = True,
    include_cores: bool = False,
) -> dict[str, float]:
    """Flat numeric keys (`system/cpu.overall`, `system/gpu.0.utilization`); nulls are left out.

    `snapshot` is a `Snapshot` or one node of `/api/system/metrics` as parsed JSON, which is validated
    first (`WireError`, a `ValueError`, names the first bad field). Accelerators whose `(type, id)`
    pair repeats (two vendors both number from 0) get the vendor in the key,
    `system/gpu.nvidia.0.utilization`, so their values never overwrite each other.
    """
    snap = snapshot if isinstance(snapshot, Snapshot) else wire.snapshot_from_wire(dict(snapshot))
    flat: dict[str, float] = {}
    for key, get in _SCALARS:
        _put(flat, prefix + key, get(snap))
    if include_cores and snap.cpu:
        for core in snap.cpu.cores:
            _put(flat, f"{prefix}cpu.core.{core.id}.usage", core.usage)
    if include_gpu:
        # Each vendor numbers its devices from 0: where (type, id) repeats, the vendor joins the key.
        seen = Counter((acc.type or "gpu", acc.id) for acc in snap.accelerators)
        for acc in snap.accelerators:
            kind = acc.type or "gpu"
            vendor = f"{acc.vendor or 'unknown'}." if seen[kind, acc.id] > 1 else ""
            base = f"{prefix}{kind}.{vendor}{acc.id}."
            for key, read in _ACCELERATOR_FIELDS:
                _put(flat, base + key, read(acc))
            flat.update(mig_keys(acc, base))
    # NVLink only for the NVIDIA GPUs listed (visible to the run, when the caller filtered them).
    nvidia = {acc.id for acc in snap.accelerators if acc.vendor == "nvidia"} if include_gpu else set()
    flat.update(fabric_keys(snap.fabric, prefix, nvidia))
    return flat


def _put(flat: dict[str, float], key: str, value: Value) -> None:
    if value is not None:
        flat[key] = value


def aggregate(samples: list[dict[str, float]]) -> dict[str, float]:
    """Mean under each key, plus `<key>.min` and `<key>.max`, over the samples that have it."""
    out: dict[str, float] = {}
    keys = dict.fromkeys(k for sample in samples for k in sample)
    for key in keys:
        values = [sample[key] for sample in samples if key in sample]
        out[key] = round(sum(values) / len(values), 4)
        out[key + ".min"] = min(values)
        out[key + ".max"] = max(values)
    return out


# -- the background cache -----------------------------------------------------------------------


class SystemMetrics:
    """A thread that polls the service and caches the flat metrics; readers never touch the network."""

    def __init__(self, config: SystemMetricsConfig) -> None:
        self.config = config
        self.service_url = config.service_url.rstrip("/")
        self._headers = auth_headers(config.token or default_token())
        # Like aiohttp's default, ignore *_proxy variables: the service is local or on the LAN.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._latest: dict[str, float] = {}
        self._latest_ts: int | None = None
        self._latest_alone: dict[str, float] | None = None  # aggregate([latest]), cached
        self._window: deque[dict[str, float]] = deque(maxlen=_WINDOW)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._first = threading.Event()
        self._warned = False  # an outage was reported (cleared when metrics return)
        self._refused = False  # an invalid snapshot was reported (cleared by the next valid one)
        self._monitor: Any = None  # a SystemMonitor we started (start_service=True)
        self._energy = EnergyBetweenLogs()  # joules used between two log calls (sdk_energy.py)
        self._thread: threading.Thread | None = None

    def start(self, *, wait: bool = True) -> SystemMetrics:
        """Start refreshing; with `wait`, block (at most `timeout`) until the first answer."""
        if self.config.start_service and not self._reachable():
            from .monitor import SystemMonitor

            self._monitor = SystemMonitor(
                rest_port=0, interval=min(self.config.cache_duration, 1.0), token=self.config.token
            )
            self.service_url = self._monitor.url
        self._thread = threading.Thread(target=self._run, name="tracklab-sysmon-sdk", daemon=True)
        self._thread.start()
        if wait:
            self._first.wait(self.config.timeout + 0.5)
        return self

    def stop(self) -> None:
        """Stop the thread (and a service this object started); idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.config.timeout + 1.0)
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None

    def latest(self) -> dict[str, float]:
        """The last refreshed metrics (a copy); `{}` while the service is unreachable."""
        with self._lock:
            return dict(self._latest)

    def for_log(self) -> dict[str, float]:
        """What one log call records: the latest values, or the window's aggregate, then reset; plus the
        energy used since the previous log call (`energy.*.joules`, never aggregated)."""
        return self._values_for_log() | self._energy.take()

    def _values_for_log(self) -> dict[str, float]:
        if not self.config.aggregate:
            return self.latest()
        with self._lock:
            samples = list(self._window)
            self._window.clear()
            if not samples:  # several logs per sample: the latest stands alone, computed once
                if self._latest_alone is None:
                    self._latest_alone = aggregate([self._latest]) if self._latest else {}
                return dict(self._latest_alone)
        return aggregate(samples)

    def refresh(self) -> bool:
        """Fetch once now; True on success. Called by the thread; public for tests and tools."""
        try:
            snapshot = self._fetch()
            flat = self._scoped(snapshot)
            energy = self._energy_totals(snapshot)
        except WireError as exc:  # the service answered, but not with a valid snapshot: keep the last good values
            with self._lock:
                first_refusal, self._refused = not self._refused, True
            if first_refusal:
                log.warning("refused a snapshot from %s (%s); keeping the last good values", self.service_url, exc)
            return False
        except (OSError, ValueError, http.client.HTTPException, SysmonError) as exc:
            with self._lock:
                self._latest, self._latest_ts, self._latest_alone = {}, None, None
                first_failure, self._warned = not self._warned, True
            if first_failure:  # one warning per outage, not one per step
                log.warning("system metrics unavailable from %s (%s); logging without them", self.service_url, exc)
            return False
        with self._lock:
            if snapshot.timestamp != self._latest_ts:  # the same sample twice counts once
                self._window.append(flat)
            self._latest, self._latest_ts = flat, snapshot.timestamp
            self._latest_alone = None
            recovered, self._warned, self._refused = self._warned, False, False
        self._energy.see(snapshot.timestamp, energy)
        if recovered:
            log.warning("system metrics from %s are back", self.service_url)
        return True

    def _scoped(self, snapshot: Snapshot) -> dict[str, float]:
        """The keys `config.scope` asks for; GPU keys only for the devices the environment leaves visible."""
        config = self.config
        visible = visible_devices(os.environ, snapshot.accelerators) if config.include_gpu else set()
        mine = replace(snapshot, accelerators=tuple(
            a for a in snapshot.accelerators if (a.vendor or "", a.id) in visible))
        if config.scope == "host":
            return flatten_snapshot(mine, prefix=config.prefix, include_gpu=config.include_gpu,
                                    include_cores=config.include_cores)
        devices_only = Snapshot(mine.node_id, mine.timestamp, accelerators=mine.accelerators)
        flat = flatten_snapshot(devices_only, prefix=config.prefix, include_gpu=config.include_gpu)
        if config.scope == "container":
            return flat | (container_values(snapshot.container, config.prefix) if snapshot.container else {})
        return flat | run_values(run_tree(self._get_json, os.getpid()), visible, config.prefix)

    def _energy_totals(self, snapshot: Snapshot) -> dict[str, float]:
        """Cumulative joules per energy key, GPUs only where the environment leaves them visible."""
        visible = visible_devices(os.environ, snapshot.accelerators) if self.config.include_gpu else set()
        return energy_totals(snapshot, visible, self.config.prefix)

    def _get_json(self, path: str) -> Any:
        with self._open(self.service_url + path) as resp:
            return orjson.loads(resp.read())

    def _run(self) -> None:
        while True:
            self.refresh()
            self._first.set()
            if self._stop.wait(self.config.cache_duration):
                return

    def _fetch(self) -> Snapshot:
        """The first listed node's snapshot, decoded and validated once (WireError if it is not one)."""
        url = self.service_url + "/api/system/metrics"
        if self.config.node_id is not None:
            url += "?" + urllib.parse.urlencode({"node_id": self.config.node_id})
        with self._open(url) as resp:
            nodes = wire.decode(resp.read())
        if not isinstance(nodes, list) or not nodes:
            raise SysmonError("the service returned no snapshot")
        return wire.snapshot_from_wire(nodes[0])

    def _open(self, url: str) -> Any:
        request = urllib.request.Request(url, headers=self._headers)
        try:
            return self._opener.open(request, timeout=self.config.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response's socket
            raise SysmonError(f"HTTP {exc.code} {exc.reason}") from None

    def _reachable(self) -> bool:
        try:
            with self._open(self.service_url + "/api/health"):
                return True
        except (OSError, ValueError, http.client.HTTPException, SysmonError):
            return False


_current: SystemMetrics | None = None
_current_lock = threading.Lock()


def init_system_metrics(config: SystemMetricsConfig | None = None, *, wait: bool = True) -> SystemMetrics | None:
    """Start gathering system metrics for every later `run.log` / wrapped log; replaces a previous setup."""
    global _current
    config = config or SystemMetricsConfig()
    with _current_lock:
        previous, _current = _current, None
        if previous is not None:
            previous.stop()
        if config.enabled:
            _current = SystemMetrics(config).start(wait=wait)
        return _current


def shutdown_system_metrics() -> None:
    """Stop gathering system metrics; later logs carry none."""
    global _current
    with _current_lock:
        current, _current = _current, None
    if current is not None:
        current.stop()


def get_system_metrics() -> dict[str, float]:
    """The latest flat system metrics from the cache (`{}` when not initialised or unreachable)."""
    current = _current
    return current.latest() if current is not None else {}


def _metrics_for_log() -> dict[str, float]:
    current = _current
    return current.for_log() if current is not None else {}


def wrap_log(fn: F) -> F:
    """Wrap any tracker's `log(dict, ...)` (wandb.log, mlflow.log_metrics, ...) to add system metrics.

    The metrics dict may come positionally or under the name of `fn`'s first parameter
    (`log_metrics(metrics={...}, step=1)`); without either, `fn` gets the system metrics alone.
    """
    name, by_keyword = _first_parameter(fn)

    @functools.wraps(fn)
    def logged(*args: Any, **kwargs: Any) -> Any:
        system = _metrics_for_log()
        if args:
            return fn(_merge(args[0], system), *args[1:], **kwargs)
        if name is None:  # no keyword name for the dict: the wrapper's old `data=` keyword still works
            return fn(_merge(kwargs.pop("data", None), system), **kwargs)
        if by_keyword or name in kwargs:
            kwargs[name] = _merge(kwargs.get(name), system)
            return fn(**kwargs)
        return fn(_merge(None, system), **kwargs)

    return logged  # type: ignore[return-value]


def _first_parameter(fn: Callable[..., Any]) -> tuple[str | None, bool]:
    """fn's first parameter's name if callers may pass it by keyword (else None), and if they must."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins and extension functions without a signature
        return None, False
    if not params or params[0].kind not in (params[0].POSITIONAL_OR_KEYWORD, params[0].KEYWORD_ONLY):
        return None, False  # (*args), (x, /) or no parameters: the dict can only go first, positionally
    return params[0].name, params[0].kind is params[0].KEYWORD_ONLY


def _merge(data: Mapping[str, Any] | None, system: dict[str, float]) -> dict[str, Any]:
    merged = dict(data or {})
    for key, value in system.items():
        merged.setdefault(key, value)  # the caller's own key wins over ours
    return merged


# -- a minimal run logger ----------------------------------------------------------------------


class Run:
    """One experiment run: `log()` appends a JSON line (with system metrics) to `<dir>/<project>/<name>.jsonl`."""

    def __init__(self, project: str, name: str | None = None, dir: str | os.PathLike[str] | None = None) -> None:
        if not project or "/" in project or project in (".", ".."):
            raise ConfigError(f"project must be a plain name, got {project!r}")
        if name is not None and (not name or "/" in name or name in (".", "..")):
            raise ConfigError(f"name must be a plain name, got {name!r}")
        self.project = project
        self.name = name or f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        root = pathlib.Path(dir if dir is not None else os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR)
        self.path = root / project / f"{self.name}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 (closed by finish())
        self._lock = threading.Lock()
        self.step = 0

    def log(self, data: Mapping[str, Any], step: int | None = None) -> None:
        """Append one line `{"_step", "_timestamp" (ms), **data, **system metrics}`; never waits on the network."""
        if not isinstance(data, Mapping):
            raise TypeError(f"log() takes a mapping of metrics, got {type(data).__name__}")
        system = _metrics_for_log()
        with self._lock:
            if self._file.closed:
                raise SysmonError(f"run {self.name!r} is finished")
            if step is None:
                step = self.step
            self.step = step + 1
            record = {"_step": step, "_timestamp": int(time.time() * 1000)}  # ms, like every timestamp here
            record.update(_merge(data, system))
            self._file.write(orjson.dumps(record, default=_to_json, option=_JSON_OPTIONS) + b"\n")
            self._file.flush()

    def finish(self) -> None:
        """Close the log file; idempotent."""
        with self._lock:
            self._file.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.finish()

    def __repr__(self) -> str:
        return f"<Run {self.project}/{self.name} step={self.step}>"


_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _to_json(value: Any) -> Any:
    """Scalars from array libraries (torch, jax, ...) become plain numbers; anything else its str."""
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    return str(value)


def init(project: str, name: str | None = None, dir: str | os.PathLike[str] | None = None) -> Run:
    """Start a run (the seed's `tracklab.init`); system metrics come from `init_system_metrics`."""
    return Run(project, name=name, dir=dir)
