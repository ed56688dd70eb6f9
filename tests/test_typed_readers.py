"""Typed readers: /metrics reads kept `Snapshot`s (never decodes); the SDK flattens from one table of getters."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tracklab_sysmon import wire
from tracklab_sysmon.collectors import default_collectors
from tracklab_sysmon.collectors.base import Partial
from tracklab_sysmon.config import PeerSpec, ServiceConfig
from tracklab_sysmon.model import (
    AcceleratorMemory,
    AcceleratorSample,
    CoreSample,
    CpuSample,
    CpuTimes,
    DiskDeviceSample,
    DiskSample,
    InterfaceSample,
    MemorySample,
    NetworkSample,
    NvmlDetails,
    Snapshot,
    SwapSample,
)
from tracklab_sysmon.sdk import SystemMetrics, SystemMetricsConfig, flatten_snapshot
from tracklab_sysmon.server import create_app
from tracklab_sysmon.server.peers import PEERS, PeerState, node_snapshots, served_snapshots

NODE = "typed-node"
SLOW = 3600.0  # one snapshot for the whole test


def _accelerator(id: int, vendor: str, base: float) -> AcceleratorSample:
    return AcceleratorSample(
        id=id, type="gpu", name=f"{vendor} card", utilization=base + 1, vendor=vendor, uuid=f"GPU-{vendor}-{id}",
        memory=AcceleratorMemory(used=int(base) + 2, total=int(base) + 3, percentage=base + 4),
        temperature=base + 5, power=base + 6, fan_speed=base + 7, details=NvmlDetails(bus_id="0000:01:00.0"),
    )


def distinct_snapshot(node_id: str = "peer-typed") -> Snapshot:
    """A snapshot in which every readable number differs from every other: a getter reading the wrong field shows."""
    return Snapshot(
        node_id=node_id,
        timestamp=1_700_000_000_123,
        cpu=CpuSample(
            overall=12.5, load_average=(0.25, 0.5, 0.75), processes=301, threads=902, temperature=55.5,
            cores=(
                CoreSample(id=0, usage=10.5, frequency=2001.0, temperature=50.5,
                           times=CpuTimes(1.01, 1.02, 1.03, 1.04, 1.05, 1.06, 1.07, 1.08)),
                CoreSample(id=1, usage=14.5, frequency=2002.0, temperature=51.5,
                           times=CpuTimes(2.01, 2.02, 2.03, 2.04, 2.05, 2.06, 2.07, 2.08)),
            ),
        ),
        memory=MemorySample(usage=61.5, used=6_100, total=10_000, available=3_900,
                            swap=SwapSample(used=700, total=2_000, percentage=35.5)),
        disk=DiskSample(
            usage=41.5, used=41_000, total=100_000, io_read=1_234.5, io_write=2_345.5, iops=17.5,
            devices=(DiskDeviceSample(name="nvme0n1", read_bytes=5_001, write_bytes=5_002, reads=5_003,
                                      writes=5_004, read_rate=5_005.5, write_rate=5_006.5, iops=5_007.5),),
        ),
        network=NetworkSample(
            bytes_in=3_456.5, bytes_out=4_567.5, packets_in=31.5, packets_out=32.5, connections=77,
            interfaces=(InterfaceSample(name="eth0", bytes_recv=6_001, bytes_sent=6_002, packets_recv=6_003,
                                        packets_sent=6_004, bytes_in=6_005.5, bytes_out=6_006.5,
                                        packets_in=6_007.5, packets_out=6_008.5),),
        ),
        accelerators=(
            _accelerator(0, "nvidia", 100.0), _accelerator(0, "amd", 200.0), _accelerator(1, "nvidia", 300.0)
        ),
    )


# --------------------------------------------------------------------------------------------- SDK


def _dig(value: Any, *path: str) -> Any:
    for key in path:
        value = value[key]
    return value


def _expected_flat(body: dict[str, Any]) -> dict[str, float]:
    """The SDK contract written apart from sdk.py: each public key and the wire field it comes from."""
    scalars = {
        "cpu.overall": ("cpu", "overall"), "cpu.temperature": ("cpu", "temperature"),
        "memory.usage": ("memory", "usage"), "memory.used": ("memory", "used"),
        "memory.swap.percentage": ("memory", "swap", "percentage"), "disk.usage": ("disk", "usage"),
        "disk.ioRead": ("disk", "ioRead"), "disk.ioWrite": ("disk", "ioWrite"), "disk.iops": ("disk", "iops"),
        "network.bytesIn": ("network", "bytesIn"), "network.bytesOut": ("network", "bytesOut"),
    }
    flat = {"system/" + key: _dig(body, *path) for key, path in scalars.items()}
    flat |= {f"system/cpu.core.{core['id']}.usage": core["usage"] for core in body["cpu"]["cores"]}
    fields = {"utilization": ("utilization",), "memory.percentage": ("memory", "percentage"),
              "memory.used": ("memory", "used"), "temperature": ("temperature",), "power": ("power",)}
    for acc, key in zip(body["accelerators"], ("gpu.nvidia.0", "gpu.amd.0", "gpu.1"), strict=True):
        flat |= {f"system/{key}.{name}": _dig(acc, *path) for name, path in fields.items()}
    return flat


def test_flatten_reads_every_public_key_from_its_own_field():
    """Every SDK key carries the value of its documented wire field, on a snapshot whose numbers all differ."""
    snap = distinct_snapshot()
    body = wire.snapshot_to_wire(snap)
    flat = flatten_snapshot(snap, include_cores=True)
    assert flat == _expected_flat(body)
    assert len(set(flat.values())) == len(flat), "the fixture must make a swapped getter visible"


def test_flatten_of_a_snapshot_equals_flatten_of_its_wire_dict():
    """A Snapshot, its wire dict and the dict parsed back from JSON bytes flatten to the same keys and values."""
    snap = distinct_snapshot()
    parsed = orjson.loads(wire.encode(wire.snapshot_to_wire(snap)))
    for options in ({}, {"include_cores": True, "prefix": "sys."}, {"include_gpu": False}):
        typed = flatten_snapshot(snap, **options)
        assert typed == flatten_snapshot(wire.snapshot_to_wire(snap), **options) == flatten_snapshot(parsed, **options)
        assert {k: type(v) for k, v in typed.items()} == {
            k: type(v) for k, v in flatten_snapshot(parsed, **options).items()
        }, "ints stay ints, floats stay floats"


def test_flatten_refuses_a_mapping_that_is_not_a_snapshot():
    """A mapping is validated first: a bad field is a WireError naming it, not a silently missing key."""
    body = wire.snapshot_to_wire(distinct_snapshot())
    body["disk"]["ioRead"] = "fast"
    with pytest.raises(wire.WireError, match=r"disk\.ioRead: expected number, got string"):
        flatten_snapshot(body)


class _Answers(http.server.BaseHTTPRequestHandler):
    """Serves `server.body` as /api/system/metrics and counts the requests."""

    def do_GET(self) -> None:
        body = self.server.body  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.served += 1  # type: ignore[attr-defined]
            self.server.changed.notify_all()  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answers() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    server.body, server.served, server.lock = b"[]", 0, threading.Lock()  # type: ignore[attr-defined]
    server.changed = threading.Condition(server.lock)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(10)
    server.server_close()


def _nodes(snap: Snapshot) -> bytes:
    return wire.encode([wire.snapshot_to_wire(snap)])


def _wait_for_requests(server: Any, count: int) -> None:
    with server.changed:
        assert server.changed.wait_for(lambda: server.served >= count, timeout=30), f"{count} requests"


def test_an_invalid_snapshot_keeps_the_last_good_values_and_is_logged_once(answers, caplog):
    """A snapshot that fails validation: refresh() is False, the last good values stay, one warning per refusal run,
    and the background thread keeps polling until a valid one replaces them."""
    url = f"http://127.0.0.1:{answers.server_address[1]}"
    good = distinct_snapshot()
    answers.body = _nodes(good)
    metrics = SystemMetrics(SystemMetricsConfig(service_url=url, cache_duration=0.05))
    assert metrics.refresh() is True
    before = metrics.latest()
    assert before["system/disk.ioRead"] == 1_234.5

    bad = wire.snapshot_to_wire(good)
    bad["cpu"]["cores"][1]["times"]["idle"] = None
    answers.body = wire.encode([bad])
    with caplog.at_level(logging.WARNING, logger="tracklab_sysmon.sdk"):
        assert metrics.refresh() is False and metrics.refresh() is False
        metrics.start(wait=False)  # the thread meets the same refusal, again and again
        _wait_for_requests(answers, answers.served + 5)
        assert metrics._thread is not None and metrics._thread.is_alive()
        assert metrics.latest() == before
        refusals = [r.getMessage() for r in caplog.records if "refused a snapshot" in r.getMessage()]
        assert len(refusals) == 1 and "cpu.cores[1].times.idle: expected number, got null" in refusals[0]

        newer = Snapshot(node_id="peer-typed", timestamp=good.timestamp + 1000,
                         cpu=CpuSample(overall=99.5, cores=(), load_average=None, processes=None, threads=None,
                                       temperature=None))
        answers.body = _nodes(newer)
        # +3: the third request is sent only after the second, which surely read the new body, was handled.
        _wait_for_requests(answers, answers.served + 3)
        assert metrics.latest() == {"system/cpu.overall": 99.5}

        answers.body = wire.encode([bad])  # a second refusal run is reported again, once
        _wait_for_requests(answers, answers.served + 3)
        metrics.stop()
    refusals = [r for r in caplog.records if "refused a snapshot" in r.getMessage()]
    assert len(refusals) == 2
    assert metrics.latest() == {"system/cpu.overall": 99.5}


# --------------------------------------------------------------------------------------------- Prometheus


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _app_with_kept_peer(aiohttp_client, snap: Snapshot, *, collectors=None):
    """A served peer that holds its snapshot only as a record: its bytes are not JSON, so decoding them fails."""
    config = ServiceConfig(node_id=NODE, interval=SLOW, history=5)
    client = await aiohttp_client(create_app(config, collectors=collectors))
    peer = PeerState(PeerSpec("http://user:secret@peer.example:8080"))
    peer.node_id, peer.status, peer.last_seen = snap.node_id, "up", snap.timestamp
    peer.snapshot, peer.latest = snap, b"\x00 not json"
    client.server.app[PEERS].peers.append(peer)  # no follower: the state stays as set
    return client


async def test_a_scrape_reads_kept_snapshots_and_never_decodes(aiohttp_client, monkeypatch):
    """With wire.decode made to fail, /metrics still carries the peer's series, each equal to its typed field."""
    snap = distinct_snapshot()
    client = await _app_with_kept_peer(aiohttp_client, snap)

    def no_decoding(data: object) -> object:
        raise AssertionError("a scrape decoded JSON")

    monkeypatch.setattr(wire, "decode", no_decoding)
    response = await client.get("/metrics")
    assert response.status == 200
    samples = _samples(await response.text())
    peer = {"node_id": "peer-typed"}

    def value(name: str, **labels: str) -> float:
        return samples[("tracklab_sysmon_" + name, frozenset({**peer, **labels}.items()))]

    assert value("snapshot_timestamp_seconds") == 1_700_000_000.123
    assert value("cpu_usage_ratio") == 0.125
    assert [value("load_average", window=w) for w in ("1m", "5m", "15m")] == [0.25, 0.5, 0.75]
    assert (value("processes"), value("threads"), value("cpu_temperature_celsius")) == (301, 902, 55.5)
    assert (value("memory_total_bytes"), value("memory_used_bytes"), value("memory_available_bytes")) == (
        10_000, 6_100, 3_900)
    assert (value("swap_total_bytes"), value("swap_used_bytes")) == (2_000, 700)
    assert (value("filesystem_size_bytes"), value("filesystem_used_bytes")) == (100_000, 41_000)
    assert value("tcp_connections_established") == 77
    modes = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    assert [value("cpu_seconds_total", cpu="1", mode=m) for m in modes] == [
        2.01, 2.02, 2.03, 2.04, 2.05, 2.06, 2.07, 2.08]
    disk = {"device": "nvme0n1"}
    assert [value(n, **disk) for n in ("disk_read_bytes_total", "disk_written_bytes_total",
                                       "disk_reads_completed_total", "disk_writes_completed_total")] == [
        5_001, 5_002, 5_003, 5_004]
    eth = {"interface": "eth0"}
    assert [value(n, **eth) for n in ("network_receive_bytes_total", "network_transmit_bytes_total",
                                      "network_receive_packets_total", "network_transmit_packets_total")] == [
        6_001, 6_002, 6_003, 6_004]
    amd = {"gpu": "0", "uuid": "GPU-amd-0", "vendor": "amd"}
    assert [value(n, **amd) for n in ("gpu_utilization_ratio", "gpu_memory_used_bytes", "gpu_memory_total_bytes",
                                      "gpu_power_watts", "gpu_temperature_celsius")] == [
        2.01, 202, 203, 206.0, 205.0]
    assert value("peer_up", url="http://peer.example:8080") == 1.0


class DegradedGpu:
    """A collector at the Collector boundary that ran but had to null a value: the sampler marks it degraded."""

    name, blocking = "gpu-degraded", False

    def collect(self, now: float) -> Partial:
        return Partial((_accelerator(0, "nvidia", 100.0),), "fan speed unreadable")


async def test_a_degraded_collector_reports_success(aiohttp_client):
    """collector_success is 1 for a degraded collector (it ran), beside 1 for ok ones; health says degraded."""
    client = await _app_with_kept_peer(aiohttp_client, distinct_snapshot(),
                                       collectors=(*default_collectors(), DegradedGpu()))
    health = await (await client.get("/api/health")).json()
    assert health["collectors"]["gpu-degraded"]["status"] == "degraded"
    samples = _samples(await (await client.get("/metrics")).text())
    local = {"node_id": NODE, "collector": "gpu-degraded"}
    assert samples[("tracklab_sysmon_collector_success", frozenset(local.items()))] == 1.0
    assert samples[("tracklab_sysmon_gpu_utilization_ratio",
                    frozenset({"node_id": NODE, "gpu": "0", "uuid": "GPU-nvidia-0",
                               "vendor": "nvidia"}.items()))] == 1.01


async def test_served_snapshots_are_the_served_nodes_in_order(aiohttp_client):
    """served_snapshots lists the nodes node_snapshots serves, local first, in order: down, error, duplicate and
    not-yet-answered peers are left out alike, and each kept record is the one behind the served bytes."""
    config = ServiceConfig(node_id=NODE, interval=SLOW, history=5)
    client = await aiohttp_client(create_app(config))
    app = client.server.app
    for status in ("up", "down", "duplicate", "error", "up", "connecting"):
        index = len(app[PEERS].peers)
        peer = PeerState(PeerSpec(f"http://peer-{index}.example:8080"))
        if status != "connecting":
            snap = distinct_snapshot(f"{status}-{index}")
            peer.node_id, peer.snapshot, peer.latest = snap.node_id, snap, _nodes(snap)[1:-1]
        peer.status = status
        app[PEERS].peers.append(peer)

    typed = served_snapshots(app)
    assert [snap.node_id for snap in typed] == [NODE, "up-0", "up-4"]
    assert [snap.node_id for snap in typed] == [node for node, _ in node_snapshots(app)]
    for snap, (_, body) in zip(typed, node_snapshots(app), strict=True):
        assert wire.snapshot_to_wire(snap) == orjson.loads(body)
