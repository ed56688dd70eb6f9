"""Which Habana, TPU, AWS Neuron and Intel devices a run may use, read from the variables their runtimes read.

Each rule takes the environment and one vendor's devices (sorted by id) and returns the devices it keeps;
`scopes.visible_devices` applies them. docs/python-api.md ("Scopes") names the source of every rule.
- habana: `HABANA_VISIBLE_DEVICES` (the container runtime: device indices, `all`), then
  `HABANA_VISIBLE_MODULES` (the framework: OAM module ids) among what that left.
- google: `TPU_VISIBLE_CHIPS` (libtpu's current name), else `TPU_VISIBLE_DEVICES` (its older one): chip indices.
- aws: `NEURON_RT_VISIBLE_CORES`: NeuronCore indices and inclusive ranges; a device is kept when the list
  names any of its cores.
- intel: `ZE_AFFINITY_MASK`: `device` or `device.subdevice` entries keep card `device`; empty keeps all.
Index lists are sets: order and repeats do not matter, and an entry that names no device is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from .model import AcceleratorSample, HabanaDetails, NeuronDetails

Rule = Callable[[Mapping[str, str], Sequence[AcceleratorSample]], Sequence[AcceleratorSample]]
_ALL, _NONE = frozenset({"all"}), frozenset({"", "none", "void"})


def habana(environ: Mapping[str, str], devices: Sequence[AcceleratorSample]) -> Sequence[AcceleratorSample]:
    """HABANA_VISIBLE_DEVICES by device index, then HABANA_VISIBLE_MODULES by module id."""
    if "HABANA_VISIBLE_DEVICES" in environ:
        devices = _keep(environ["HABANA_VISIBLE_DEVICES"], devices, lambda a: a.id)
    if "HABANA_VISIBLE_MODULES" in environ:
        devices = _keep(environ["HABANA_VISIBLE_MODULES"], devices, _module_id)
    return devices


def google(environ: Mapping[str, str], devices: Sequence[AcceleratorSample]) -> Sequence[AcceleratorSample]:
    """TPU_VISIBLE_CHIPS, else TPU_VISIBLE_DEVICES, by chip index."""
    value = environ.get("TPU_VISIBLE_CHIPS", environ.get("TPU_VISIBLE_DEVICES"))
    return devices if value is None else _keep(value, devices, lambda a: a.id)


def aws(environ: Mapping[str, str], devices: Sequence[AcceleratorSample]) -> Sequence[AcceleratorSample]:
    """NEURON_RT_VISIBLE_CORES: the devices holding any listed NeuronCore; unset or empty keeps all."""
    value = environ.get("NEURON_RT_VISIBLE_CORES", "").strip()
    if not value:
        return devices  # the runtime's default: every core
    cores = set(_indices(value.split(","), ranges=True))
    return [a for a in devices if cores & _cores(a)]


def intel(environ: Mapping[str, str], devices: Sequence[AcceleratorSample]) -> Sequence[AcceleratorSample]:
    """ZE_AFFINITY_MASK: the cards its `device[.subdevice]` entries name; unset or empty keeps all."""
    value = environ.get("ZE_AFFINITY_MASK", "").strip()
    if not value:
        return devices
    cards = set(_indices(entry.split(".", 1)[0] for entry in value.split(",")))
    return [a for a in devices if a.id in cards]


RULES: dict[str, Rule] = {"habana": habana, "google": google, "aws": aws, "intel": intel}


def _keep(value: str, devices: Sequence[AcceleratorSample],
          key: Callable[[AcceleratorSample], int | None]) -> Sequence[AcceleratorSample]:
    text = value.strip().lower()
    if text in _ALL:
        return devices
    if text in _NONE:
        return []
    wanted = set(_indices(text.split(",")))
    return [a for a in devices if key(a) in wanted]


def _indices(entries: Iterable[str], *, ranges: bool = False) -> Iterable[int]:
    """The integers the entries spell (`3`; with ranges also `0-3`, inclusive); anything else is skipped."""
    for entry in (e.strip() for e in entries):
        low, dash, high = entry.partition("-")
        if entry.isdigit():
            yield int(entry)
        elif ranges and dash and low.strip().isdigit() and high.strip().isdigit():
            yield from range(int(low), int(high) + 1)


def _module_id(device: AcceleratorSample) -> int | None:
    return device.details.module_id if isinstance(device.details, HabanaDetails) else None


def _cores(device: AcceleratorSample) -> set[int]:
    return {c.index for c in device.details.cores} if isinstance(device.details, NeuronDetails) else set()
