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
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from . import wire
from .client import auth_headers, default_token
from .errors import ConfigError, SysmonError
from .scopes import SCOPES, container_values, run_tree, run_values, visible_devices

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


def _visible_devices(accelerators: Any, environ: Mapping[str, str]) -> set[tuple[str, int]]:
    """(vendor, id) of the snapshot's accelerators that the environment's *_VISIBLE_DEVICES leave to this run."""
    typed = [wire.accelerator_from_wire(a) for a in accelerators or () if isinstance(a, dict)]
    return visible_devices(environ, typed)


def _visible_accelerators(accelerators: Any, environ: Mapping[str, str]) -> list[Any]:
    visible = _visible_devices(accelerators, environ)
    return [a for a in accelerators or () if isinstance(a, dict) and ((a.get("vendor") or ""), a.get("id")) in visible]


# -- flattening ---------------------------------------------------------------------------------

_SCALARS = (
    ("cpu", ("overall",), "cpu.overall"),
    ("cpu", ("temperature",), "cpu.temperature"),
    ("memory", ("usage",), "memory.usage"),
    ("memory", ("used",), "memory.used"),
    ("memory", ("swap", "percentage"), "memory.swap.percentage"),
    ("disk", ("usage",), "disk.usage"),
    ("disk", ("ioRead",), "disk.ioRead"),
    ("disk", ("ioWrite",), "disk.ioWrite"),
    ("disk", ("iops",), "disk.iops"),
    ("network", ("bytesIn",), "network.bytesIn"),
    ("network", ("bytesOut",), "network.bytesOut"),
)
_ACCELERATOR_FIELDS = (
    (("utilization",), "utilization"),
    (("memory", "percentage"), "memory.percentage"),
    (("memory", "used"), "memory.used"),
    (("temperature",), "temperature"),
    (("power",), "power"),
)


def flatten_snapshot(
    snapshot: Mapping[str, Any], *, prefix: str = "system/", include_gpu: bool = True, include_cores: bool = False
) -> dict[str, float]:
    """Flat numeric keys (`system/cpu.overall`, `system/gpu.0.utilization`); nulls are left out.

    Accelerators whose `(type, id)` pair repeats (two vendors both number from 0) get the vendor
    in the key, `system/gpu.nvidia.0.utilization`, so their values never overwrite each other.
    """
    flat: dict[str, float] = {}
    for section, path, key in _SCALARS:
        _put(flat, prefix + key, _dig(snapshot.get(section), path))
    if include_cores:
        for core in (snapshot.get("cpu") or {}).get("cores") or ():
            _put(flat, f"{prefix}cpu.core.{core.get('id')}.usage", core.get("usage"))
    if include_gpu:
        accelerators = [acc for acc in snapshot.get("accelerators") or () if isinstance(acc, Mapping)]
        # Each vendor numbers its devices from 0: where (type, id) repeats, the vendor joins the key.
        seen = Counter((acc.get("type") or "gpu", acc.get("id")) for acc in accelerators)
        for acc in accelerators:
            kind, dev = acc.get("type") or "gpu", acc.get("id")
            vendor = f"{acc.get('vendor') or 'unknown'}." if seen[kind, dev] > 1 else ""
            base = f"{prefix}{kind}.{vendor}{dev}."
            for path, key in _ACCELERATOR_FIELDS:
                _put(flat, base + key, _dig(acc, path))
    return flat


def _dig(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _put(flat: dict[str, float], key: str, value: Any) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
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
        self._latest_ts: Any = None
        self._latest_alone: dict[str, float] | None = None  # aggregate([latest]), cached
        self._window: deque[dict[str, float]] = deque(maxlen=_WINDOW)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._first = threading.Event()
        self._warned = False
        self._monitor: Any = None  # a SystemMonitor we started (start_service=True)
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
        """What one log call records: the latest values, or the window's aggregate, then reset."""
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
        except (OSError, ValueError, http.client.HTTPException, SysmonError) as exc:
            with self._lock:
                self._latest, self._latest_ts, self._latest_alone = {}, None, None
                first_failure, self._warned = not self._warned, True
            if first_failure:  # one warning per outage, not one per step
                log.warning("system metrics unavailable from %s (%s); logging without them", self.service_url, exc)
            return False
        with self._lock:
            if snapshot.get("timestamp") != self._latest_ts:  # the same sample twice counts once
                self._window.append(flat)
            self._latest, self._latest_ts = flat, snapshot.get("timestamp")
            self._latest_alone = None
            recovered, self._warned = self._warned, False
        if recovered:
            log.warning("system metrics from %s are back", self.service_url)
        return True

    def _scoped(self, snapshot: Mapping[str, Any]) -> dict[str, float]:
        """The keys `config.scope` asks for; GPU keys only for the devices the environment leaves visible."""
        config = self.config
        accelerators = _visible_accelerators(snapshot.get("accelerators"), os.environ)
        if config.scope == "host":
            snapshot = {**snapshot, "accelerators": accelerators}
            return flatten_snapshot(
                snapshot, prefix=config.prefix, include_gpu=config.include_gpu, include_cores=config.include_cores,
            )
        flat = flatten_snapshot({"accelerators": accelerators}, prefix=config.prefix, include_gpu=config.include_gpu)
        if config.scope == "container":
            box = wire.snapshot_from_wire(dict(snapshot)).container
            return flat | (container_values(box, config.prefix) if box is not None else {})
        tree = run_tree(self._get_json, os.getpid())
        visible = _visible_devices(snapshot.get("accelerators"), os.environ) if config.include_gpu else set()
        return flat | run_values(tree, visible, config.prefix)

    def _get_json(self, path: str) -> Any:
        with self._open(self.service_url + path) as resp:
            return orjson.loads(resp.read())

    def _run(self) -> None:
        while True:
            self.refresh()
            self._first.set()
            if self._stop.wait(self.config.cache_duration):
                return

    def _fetch(self) -> Mapping[str, Any]:
        url = self.service_url + "/api/system/metrics"
        if self.config.node_id is not None:
            url += "?" + urllib.parse.urlencode({"node_id": self.config.node_id})
        with self._open(url) as resp:
            nodes = orjson.loads(resp.read())
        if not isinstance(nodes, list) or not nodes or not isinstance(nodes[0], dict):
            raise SysmonError("the service returned no snapshot")
        return nodes[0]

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
