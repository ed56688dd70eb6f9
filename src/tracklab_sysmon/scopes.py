"""What the SDK logs for `scope="container"` and `scope="run"`, and which GPUs a run may see (visible_devices).

Device lists are read as the vendors' runtimes read them. NVIDIA: `NVIDIA_VISIBLE_DEVICES` (the container
runtime's choice) first, then `CUDA_VISIBLE_DEVICES` indexes into what that left, in order; entries are
indices, GPU UUIDs (`GPU-...`) or MIG UUIDs (`MIG-...`, which select their parent GPU); as in CUDA, the
list stops at the first entry that names no device. AMD: `ROCR_VISIBLE_DEVICES`, then
`HIP_VISIBLE_DEVICES` likewise. Unset or `all`: every device; empty, `none` or `void`: none.
Habana, TPU, AWS Neuron and Intel lists are read by `device_lists`.
Indices are the service's device ids (the snapshot's `id`), so the run and the service must see the
same numbering (the same container, or both on the host).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from . import device_lists, wire
from .errors import SysmonError
from .model import AcceleratorSample, ContainerSample, GpuProcessUse, NvmlDetails, ProcessTree

Device = tuple[str, int]  # (vendor, id)
N = TypeVar("N", int, float)

_LAYERS = {"nvidia": ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"),
           "amd": ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")}
_ALL, _NONE = frozenset({"all"}), frozenset({"", "none", "void"})
SCOPES = ("host", "container", "run")


def visible_devices(environ: Mapping[str, str], accelerators: Sequence[AcceleratorSample]) -> set[Device]:
    """(vendor, id) of every accelerator the environment lets a process use; vendors without a rule are never hidden."""
    visible: set[Device] = set()
    for vendor in {acc.vendor or "" for acc in accelerators}:
        devices = sorted((acc for acc in accelerators if (acc.vendor or "") == vendor), key=lambda a: a.id)
        for variable in _LAYERS.get(vendor, ()):
            if variable in environ:
                devices = _select(environ[variable], devices)
        if (rule := device_lists.RULES.get(vendor)) is not None:
            devices = list(rule(environ, devices))
        visible.update((vendor, acc.id) for acc in devices)
    return visible


def _select(value: str, devices: list[AcceleratorSample]) -> list[AcceleratorSample]:
    """The devices a `*_VISIBLE_DEVICES` value keeps, in the order it names them."""
    text = value.strip().lower()
    if text in _ALL:
        return devices
    if text in _NONE:
        return []
    chosen: list[AcceleratorSample] = []
    for entry in (e.strip() for e in value.split(",")):
        device = _find(entry, devices)
        if device is None:
            break  # CUDA ignores everything after an entry that names no device
        if device not in chosen:
            chosen.append(device)
    return chosen


def _find(entry: str, devices: list[AcceleratorSample]) -> AcceleratorSample | None:
    if entry.isdigit():
        index = int(entry)
        return devices[index] if index < len(devices) else None
    key = entry.lower().split("/")[0]  # MIG-GPU-<uuid>/<gi>/<ci> (before CUDA 11.5) names the parent GPU
    for device in devices:
        if key in _names(device):
            return device
    return None


def _names(device: AcceleratorSample) -> set[str]:
    """The device's UUID, with and without its `GPU-` prefix, and the UUIDs of its MIG instances."""
    names: set[str] = set()
    if device.uuid:
        uuid = device.uuid.lower()
        names |= {uuid, uuid.removeprefix("gpu-"), "gpu-" + uuid.removeprefix("gpu-")}
        names.add("mig-gpu-" + uuid.removeprefix("gpu-"))
    details = device.details
    readings = details.readings if isinstance(details, NvmlDetails) else None
    if readings is not None and readings.mig is not None:
        names |= {i.uuid.lower() for i in readings.mig.instances if i.uuid}
    return names


def container_values(box: ContainerSample, prefix: str) -> dict[str, float]:
    """`scope="container"`: the cgroup's CPU against its limit, memory against its max, OOM kills, throttling."""
    values = {
        "container.cpu.usage": box.cpu.usage,
        "container.cpu.limitCores": box.cpu.limit_cores,
        "container.cpu.throttledSeconds": box.cpu.throttled_seconds_rate,  # seconds throttled per second
        "container.memory.current": box.memory.current,
        "container.memory.usage": box.memory.usage,
        "container.memory.oomKills": box.memory.oom_kills,
    }
    return {prefix + key: value for key, value in values.items() if value is not None}


def run_values(tree: ProcessTree, visible: set[Device], prefix: str) -> dict[str, float]:
    """`scope="run"`: the run's process tree summed; per-GPU figures for the visible devices only."""
    values: dict[str, float | None] = {
        "proc.cpu": tree.cpu, "proc.memory.rss": tree.rss, "proc.threads": tree.threads,
    }
    for use in tree.gpu:
        if (use.vendor, use.device) in visible:
            values[f"proc.gpu.{use.device}.memory"] = use.memory
            values[f"proc.gpu.{use.device}.utilization"] = use.utilization
    return {prefix + key: value for key, value in values.items() if value is not None}


def run_tree(get_json: Callable[[str], Any], pid: int) -> ProcessTree:
    """The tree rooted at `pid`, less the service's own subtree when the run started it (start_service=True):
    the service's cost is not the run's. `get_json(path)` asks the service."""
    tree = _tree(get_json, pid)
    health = get_json("/api/health")
    process = health.get("process") if isinstance(health, dict) else None
    service = process.get("pid") if isinstance(process, dict) else None
    if isinstance(service, int) and service != pid and service in tree.pids:
        tree = without(tree, _tree(get_json, service))
    return tree


def _tree(get_json: Callable[[str], Any], pid: int) -> ProcessTree:
    _, tree = wire.process_from_wire(get_json(f"/api/system/processes/{pid}?tree=1"))
    if tree is None:
        raise SysmonError(f"the service returned no process tree for pid {pid}")
    return tree


def without(tree: ProcessTree, part: ProcessTree) -> ProcessTree:
    """`tree` less `part`, one of its subtrees: its members go, and its sums are taken off (never below 0)."""
    gone = set(part.pids)
    parts = {(u.vendor, u.device): u for u in part.gpu}
    gpu = tuple(
        GpuProcessUse(u.device, u.vendor, _less(u.memory, p.memory), _less(u.utilization, p.utilization))
        if (p := parts.get((u.vendor, u.device))) is not None else u
        for u in tree.gpu
    )
    return ProcessTree(
        root=tree.root, pids=tuple(pid for pid in tree.pids if pid not in gone), cpu=_less(tree.cpu, part.cpu),
        rss=max(0, tree.rss - part.rss), threads=max(0, tree.threads - part.threads), fds=_less(tree.fds, part.fds),
        read_rate=_less(tree.read_rate, part.read_rate), write_rate=_less(tree.write_rate, part.write_rate), gpu=gpu,
    )


def _less(whole: N | None, part: N | None) -> N | None:
    if whole is None or part is None:
        return whole
    return max(whole - part, 0)
