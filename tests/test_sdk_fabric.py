"""SDK keys for the fabric (NVLink per GPU, InfiniBand per port) and MIG instances' DCGM activity."""

from __future__ import annotations

from test_fabric_infiniband import TREE, _service

from tracklab_sysmon import sdk, wire
from tracklab_sysmon.model import (
    AcceleratorMemory,
    AcceleratorSample,
    FabricSample,
    InfinibandPort,
    InfinibandSample,
    MigInstance,
    MigProfiling,
    MigState,
    NvlinkLink,
    NvlinkSample,
    NvmlDetails,
    NvmlReadings,
    Snapshot,
)


def _gpu(gpu_id: int, vendor: str, details: object = None) -> AcceleratorSample:
    return AcceleratorSample(id=gpu_id, type="gpu", name="g", utilization=None,
                             memory=AcceleratorMemory(None, None, None), temperature=None, power=None,
                             fan_speed=None, vendor=vendor, uuid=None, details=details)  # type: ignore[arg-type]


def _link(gpu: int, link: int, tx: float | None, rx: float | None) -> NvlinkLink:
    return NvlinkLink(gpu=gpu, uuid=None, link=link, state="active", speed=None, tx_bytes=None, rx_bytes=None,
                      tx_rate=tx, rx_rate=rx)


def _port(device: str, port: int, tx: float | None, rx: float | None) -> InfinibandPort:
    return InfinibandPort(device=device, port=port, link_layer="InfiniBand", state="active", physical_state=None,
                          rate=None, tx_bytes=None, rx_bytes=None, tx_packets=None, rx_packets=None, tx_rate=tx,
                          rx_rate=rx, tx_packets_rate=None, rx_packets_rate=None)


MIG = MigState(True, False, (
    MigInstance(0, "MIG-a", 1, 0, profiling=MigProfiling(graphics_active=40.5, sm_active=30.25, dram_active=None)),
    MigInstance(1, "MIG-b", 2, 0),  # no DCGM figures: no keys
))
FABRIC = FabricSample(
    nvlink=NvlinkSample((_link(0, 0, 100.0, 200.0), _link(0, 1, 50.5, 0.0), _link(1, 0, 10.0, None))),
    infiniband=InfinibandSample((_port("mlx5_0", 1, 1e9, 2e9), _port("mlx5_1", 1, None, 0.0))),
)


def test_nvlink_sums_per_gpu_infiniband_per_port_and_mig_per_instance():
    """Exact keys: a GPU's links summed (left out where a link's rate is unknown), each port, each profiled MIG."""
    snap = Snapshot("n", 1, accelerators=(_gpu(0, "nvidia", NvmlDetails(readings=NvmlReadings(mig=MIG))),
                                          _gpu(1, "nvidia"), _gpu(2, "amd")), fabric=FABRIC)
    keys = {k: v for k, v in sdk.flatten_snapshot(snap).items() if k.split("/")[1].split(".")[0] in
            ("nvlink", "infiniband") or ".mig." in k}
    assert keys == {
        "system/nvlink.0.txRate": 150.5, "system/nvlink.0.rxRate": 200.0, "system/nvlink.1.txRate": 10.0,
        "system/infiniband.mlx5_0.1.txRate": 1e9, "system/infiniband.mlx5_0.1.rxRate": 2e9,
        "system/infiniband.mlx5_1.1.rxRate": 0.0,
        "system/gpu.0.mig.0.graphicsActive": 40.5, "system/gpu.0.mig.0.smActive": 30.25,
    }


def test_nvlink_keys_follow_the_gpus_a_run_may_see():
    """Flattened with only GPU 0 visible (as the SDK filters by CUDA_VISIBLE_DEVICES), GPU 1's links stay out;
    without GPU keys there are no NVLink keys, and InfiniBand stays."""
    only_gpu0 = Snapshot("n", 1, accelerators=(_gpu(0, "nvidia"),), fabric=FABRIC)
    assert not any(k.startswith("system/nvlink.1.") for k in sdk.flatten_snapshot(only_gpu0))
    assert "system/nvlink.0.txRate" in sdk.flatten_snapshot(only_gpu0)
    no_gpus = sdk.flatten_snapshot(only_gpu0, include_gpu=False)
    assert not any("nvlink" in k for k in no_gpus) and no_gpus["system/infiniband.mlx5_0.1.txRate"] == 1e9


async def test_the_served_fabric_flattens_to_the_rest_values(aiohttp_client):
    """flatten_snapshot of a node read from /api/system/metrics carries each fixture port's REST rates (0 B/s:
    the fixture's counters do not move between the priming read and the first tick)."""
    client = await aiohttp_client(_service(TREE))
    (node,) = await (await client.get("/api/system/metrics")).json()
    flat = sdk.flatten_snapshot(node)
    ports = node["fabric"]["infiniband"]
    assert len(ports) == 3
    for port in ports:
        base = f"system/infiniband.{port['device']}.{port['port']}"
        assert (flat[f"{base}.txRate"], flat[f"{base}.rxRate"]) == (port["txRate"], port["rxRate"]) == (0.0, 0.0)
    assert wire.snapshot_from_wire(node).fabric is not None
