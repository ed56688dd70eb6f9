"""SDK: flat keys, aggregation, the background cache against a real service, Run and wrap_log."""

from __future__ import annotations

import json
import logging
import socket

import pytest

from tracklab_sysmon import sdk
from tracklab_sysmon.errors import ConfigError, SysmonError
from tracklab_sysmon.monitor import SystemMonitor
from tracklab_sysmon.sdk import (
    SystemMetricsConfig,
    aggregate,
    flatten_snapshot,
    get_system_metrics,
    init,
    init_system_metrics,
    shutdown_system_metrics,
    wrap_log,
)

TIMES = dict.fromkeys(("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"), 0.0)
SNAPSHOT = {  # a valid snapshot (flatten_snapshot validates a mapping through wire.snapshot_from_wire)
    "node_id": "n",
    "timestamp": 1,
    "cpu": {"overall": 45.5, "temperature": None, "cores": [{"id": 0, "usage": 50.0, "times": TIMES},
                                                                {"id": 1, "usage": 41.0, "times": TIMES}]},
    "memory": {"usage": 65.0, "used": 10, "swap": {"percentage": None}},
    "disk": None,
    "network": {"bytesIn": 1024, "bytesOut": 512},
    "accelerators": [
        {"id": 0, "type": "gpu", "utilization": 80.0, "memory": {"used": 4, "percentage": 50.0},
         "temperature": 75.0, "power": None},
        {"id": 3, "type": "npu", "utilization": 10.0, "memory": {}},
    ],
}


@pytest.fixture(scope="module")
def service():
    """One real service for the module, ticking fast so refreshes see new samples."""
    with SystemMonitor(rest_port=0, interval=0.1) as mon:
        yield mon


@pytest.fixture(autouse=True)
def no_global_metrics():
    yield
    shutdown_system_metrics()


def _closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _lines(run) -> list[dict]:
    return [json.loads(line) for line in run.path.read_text().splitlines()]


def test_flatten_keeps_numbers_and_drops_nulls():
    """Flat keys follow `system/<section>.<field>` and `system/gpu.<id>.<field>`; nulls are absent."""
    flat = flatten_snapshot(SNAPSHOT)
    assert flat == {
        "system/cpu.overall": 45.5,
        "system/memory.usage": 65.0,
        "system/memory.used": 10,
        "system/network.bytesIn": 1024,
        "system/network.bytesOut": 512,
        "system/gpu.0.utilization": 80.0,
        "system/gpu.0.memory.percentage": 50.0,
        "system/gpu.0.memory.used": 4,
        "system/gpu.0.temperature": 75.0,
        "system/npu.3.utilization": 10.0,
    }


def test_flatten_options():
    """include_gpu=False drops accelerators, include_cores adds per-core usage, prefix is applied."""
    flat = flatten_snapshot(SNAPSHOT, prefix="sys.", include_gpu=False, include_cores=True)
    assert "sys.cpu.core.0.usage" in flat and flat["sys.cpu.core.1.usage"] == 41.0
    assert not any("gpu" in key or "npu" in key for key in flat)


def test_flatten_puts_vendor_in_keys_only_where_type_and_id_collide():
    """Two vendors' gpu 0 get `gpu.<vendor>.0` keys with their own values; a unique gpu 1 keeps `gpu.1`."""
    accelerators = [
        {"id": 0, "type": "gpu", "vendor": "amd", "utilization": 5.0, "memory": {"used": 1}},
        {"id": 0, "type": "gpu", "vendor": "nvidia", "utilization": 90.0, "memory": {"used": 8}},
        {"id": 1, "type": "gpu", "vendor": "nvidia", "utilization": 70.0, "memory": {}},
        {"id": 0, "type": "npu", "vendor": "intel", "utilization": 3.0, "memory": {}},
    ]
    flat = flatten_snapshot({"node_id": "n", "timestamp": 1, "accelerators": accelerators})
    assert flat == {
        "system/gpu.amd.0.utilization": 5.0,
        "system/gpu.amd.0.memory.used": 1,
        "system/gpu.nvidia.0.utilization": 90.0,
        "system/gpu.nvidia.0.memory.used": 8,
        "system/gpu.1.utilization": 70.0,
        "system/npu.0.utilization": 3.0,
    }


def test_aggregate_mean_min_max():
    """aggregate gives the mean under the key and .min/.max beside it, over samples holding the key."""
    out = aggregate([{"a": 1.0, "b": 5}, {"a": 3.0}, {"a": 8.0, "b": 7}])
    assert out == {"a": 4.0, "a.min": 1.0, "a.max": 8.0, "b": 6.0, "b.min": 5, "b.max": 7}


def test_config_validation():
    """Nonsense configuration fails at construction with a ConfigError naming the field."""
    with pytest.raises(ConfigError, match="cache_duration"):
        SystemMetricsConfig(cache_duration=0)
    with pytest.raises(ConfigError, match="service_url"):
        SystemMetricsConfig(service_url="localhost:8080")


def test_seed_flow_logs_system_metrics(service, tmp_path):
    """init_system_metrics + init + run.log writes JSON lines holding the user's keys and system keys."""
    init_system_metrics(SystemMetricsConfig(service_url=service.url, cache_duration=0.1))
    metrics = get_system_metrics()
    assert 0.0 <= metrics["system/cpu.overall"] <= 100.0 and 0.0 < metrics["system/memory.usage"] < 100.0
    run = init(project="my-project", dir=tmp_path)
    run.log({"accuracy": 0.95})
    run.log({"accuracy": 0.96}, step=10)
    run.log({"accuracy": 0.97})
    run.finish()
    lines = _lines(run)
    assert run.path.parent == tmp_path / "my-project"
    assert [line["_step"] for line in lines] == [0, 10, 11]
    assert [line["accuracy"] for line in lines] == [0.95, 0.96, 0.97]
    assert all("system/cpu.overall" in line and "system/memory.usage" in line for line in lines)


def test_unreachable_service_gives_empty_metrics_and_one_warning(tmp_path, caplog):
    """With nothing listening, logging still works, carries no system keys, and warns only once."""
    caplog.set_level(logging.WARNING, logger="tracklab_sysmon.sdk")
    metrics = init_system_metrics(SystemMetricsConfig(service_url=_closed_url(), cache_duration=0.05, timeout=0.5))
    for _ in range(3):
        metrics.refresh()
    run = init(project="offline", dir=tmp_path)
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1)})
    run.finish()
    assert get_system_metrics() == {}
    assert all(not any(k.startswith("system/") for k in line) for line in _lines(run))
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1


def test_recovery_is_announced_and_metrics_return(service, caplog):
    """After an outage the cache fills again as soon as the service answers, and says it is back."""
    caplog.set_level(logging.WARNING, logger="tracklab_sysmon.sdk")
    metrics = sdk.SystemMetrics(SystemMetricsConfig(service_url=_closed_url(), timeout=0.5))
    assert metrics.refresh() is False and metrics.latest() == {}
    metrics.service_url = service.url
    assert metrics.refresh() is True and "system/cpu.overall" in metrics.latest()
    assert any("back" in r.getMessage() for r in caplog.records)


def test_aggregation_reports_window_and_resets(service, tmp_path):
    """aggregate=True logs mean/min/max over the samples since the previous log, then starts a new window."""
    metrics = init_system_metrics(
        SystemMetricsConfig(service_url=service.url, cache_duration=3600, aggregate=True)
    )  # the thread refreshes once; the test refreshes by hand
    import time

    deadline = time.monotonic() + 10
    while len(metrics._window) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)  # the service ticks every 0.1 s; a repeated sample is counted once
        metrics.refresh()
    samples = list(metrics._window)
    first = metrics.for_log()
    assert len(samples) >= 3
    for key in ("system/memory.usage", "system/memory.used", "system/cpu.overall"):
        values = [sample[key] for sample in samples]  # every sample has these keys: no sample is skipped
        assert first[key] == round(sum(values) / len(values), 4), key  # the window's mean, to 4 places
        assert (first[key + ".min"], first[key + ".max"]) == (min(values), max(values)), key
    key = "system/memory.usage"
    assert len(metrics._window) == 0
    again = metrics.for_log()  # no new sample: the latest value stands for the window
    assert again[key + ".min"] == again[key] == again[key + ".max"]


def test_wrap_log_adds_metrics_to_any_tracker(service):
    """wrap_log passes the caller's dict plus system keys, and the other arguments untouched."""
    calls = []

    def tracker_log(data, step=None, commit=True):
        calls.append((data, step, commit))
        return "ok"

    wrapped = wrap_log(tracker_log)
    assert wrapped.__name__ == "tracker_log"
    assert wrapped({"loss": 0.5}, 3, commit=False) == "ok"  # nothing initialised yet
    init_system_metrics(SystemMetricsConfig(service_url=service.url))
    wrapped({"loss": 0.4, "system/cpu.overall": -1.0}, step=4)
    (plain, step0, commit0), (data, step1, commit1) = calls
    assert plain == {"loss": 0.5} and (step0, commit0) == (3, False)
    assert data["loss"] == 0.4 and data["system/cpu.overall"] == -1.0  # the caller's key wins
    assert "system/memory.usage" in data and (step1, commit1) == (4, True)


def test_wrap_log_merges_into_the_first_parameter_passed_by_keyword(service):
    """`log(metrics={...}, step=1)` for an mlflow-style fn merges into `metrics`; no dict at all sends system keys."""
    calls = []

    def log_metrics(metrics, step=None, synchronous=None):
        calls.append((metrics, step))

    init_system_metrics(SystemMetricsConfig(service_url=service.url))
    wrapped = wrap_log(log_metrics)
    wrapped(metrics={"loss": 0.3}, step=1)
    wrapped(step=2)
    (named, step1), (alone, step2) = calls
    assert named["loss"] == 0.3 and "system/memory.usage" in named and step1 == 1
    assert "system/memory.usage" in alone and "loss" not in alone and step2 == 2


def test_wrap_log_handles_keyword_only_star_args_and_builtins(service):
    """A keyword-only first parameter gets the dict by name; *args fns and signature-less builtins get it first."""
    init_system_metrics(SystemMetricsConfig(service_url=service.url))

    def keyword_only(*, scalars, step=0):
        return scalars, step

    def star_args(*items):
        return items

    scalars, step = wrap_log(keyword_only)(step=5)
    assert "system/memory.usage" in scalars and step == 5
    first, second = wrap_log(star_args)({"acc": 0.9}, "extra")
    assert first["acc"] == 0.9 and "system/memory.usage" in first and second == "extra"
    copied = wrap_log(dict)(data={"acc": 0.8})  # dict has no signature: the old `data=` keyword still works
    assert copied["acc"] == 0.8 and "system/memory.usage" in copied


def test_disabled_config_collects_nothing(tmp_path):
    """enabled=False installs nothing: get_system_metrics stays {} and no thread runs."""
    assert init_system_metrics(SystemMetricsConfig(enabled=False, service_url=_closed_url())) is None
    assert get_system_metrics() == {}


def test_start_service_launches_a_monitor_when_none_answers():
    """start_service=True starts a SystemMonitor when service_url is dead, and stops it on shutdown."""
    metrics = init_system_metrics(SystemMetricsConfig(service_url=_closed_url(), start_service=True, timeout=1.0))
    monitor = metrics._monitor
    assert monitor is not None and monitor.running
    assert "system/cpu.overall" in get_system_metrics()
    shutdown_system_metrics()
    assert not monitor.running


def test_run_rejects_bad_input(tmp_path):
    """Bad project names, non-mapping data and logging after finish are clear errors."""
    with pytest.raises(ConfigError, match="project"):
        init(project="../escape", dir=tmp_path)
    run = init(project="p", name="r1", dir=tmp_path)
    with pytest.raises(TypeError, match="mapping"):
        run.log([("a", 1)])
    run.finish()
    run.finish()
    with pytest.raises(SysmonError, match="finished"):
        run.log({"a": 1})
    assert run.path == tmp_path / "p" / "r1.jsonl"


def test_run_serialises_array_scalars_and_odd_values(tmp_path):
    """Values with .item() (numpy, torch scalars) log as numbers; other objects as their str."""

    class Scalar:
        def item(self):
            return 2.5

    run = init(project="p", dir=tmp_path)
    run.log({"x": Scalar(), "path": tmp_path / "a"})
    run.finish()
    (line,) = _lines(run)
    assert line["x"] == 2.5 and line["path"] == str(tmp_path / "a")


def test_token_is_sent_by_the_refresh_thread(monkeypatch):
    """With the service's token in the config the cache fills; without it the metrics stay empty."""
    monkeypatch.delenv("TRACKLAB_SYSMON_TOKEN", raising=False)
    with SystemMonitor(rest_port=0, token="sdk-token") as guarded:
        without = sdk.SystemMetrics(SystemMetricsConfig(service_url=guarded.url))
        assert without.refresh() is False and without.latest() == {}
        config = SystemMetricsConfig(service_url=guarded.url, token="sdk-token")
        assert "sdk-token" not in repr(config)
        with_token = sdk.SystemMetrics(config)
        assert with_token.refresh() is True and "system/memory.usage" in with_token.latest()


def test_refresh_ignores_proxy_variables(service, monkeypatch):
    """A *_proxy variable pointing at nothing does not keep the refresh thread from the service."""
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, _closed_url())
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    metrics = sdk.SystemMetrics(SystemMetricsConfig(service_url=service.url, timeout=2.0))
    assert metrics.refresh() is True and "system/cpu.overall" in metrics.latest()
