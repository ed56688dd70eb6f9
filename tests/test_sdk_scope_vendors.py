"""SDK scopes: the Habana, TPU, AWS Neuron and Intel devices a run sees, as each runtime reads its list."""

from __future__ import annotations

import pytest

from tracklab_sysmon.model import (
    AcceleratorMemory,
    AcceleratorSample,
    HabanaDetails,
    NeuronCoreUse,
    NeuronDetails,
)
from tracklab_sysmon.scopes import visible_devices

Details = HabanaDetails | NeuronDetails | None


def _device(vendor: str, index: int, kind: str = "gpu", details: Details = None) -> AcceleratorSample:
    return AcceleratorSample(index, kind, None, None, AcceleratorMemory(None, None, None), None, None, None,
                             vendor, details=details)


# Eight Gaudis whose OAM module ids are not their indices (hl-smi shows both; they differ on real HLS boxes).
MODULES = [2, 3, 0, 1, 6, 7, 4, 5]
GAUDI = [_device("habana", i, "npu", HabanaDetails(module_id=m)) for i, m in enumerate(MODULES)]
TPU = [_device("google", i, "tpu") for i in range(4)]
# Two Trainium devices of two NeuronCores each, numbered across the instance as neuron-monitor numbers them.
NEURON = [_device("aws", d, "npu", NeuronDetails(cores=(NeuronCoreUse(2 * d), NeuronCoreUse(2 * d + 1))))
          for d in range(2)]
INTEL = [_device("intel", i) for i in range(3)]


def _ids(vendor: str, *ids: int) -> set[tuple[str, int]]:
    return {(vendor, i) for i in ids}


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, _ids("habana", *range(8))),
    ({"HABANA_VISIBLE_DEVICES": "all"}, _ids("habana", *range(8))),
    ({"HABANA_VISIBLE_DEVICES": "ALL"}, _ids("habana", *range(8))),
    ({"HABANA_VISIBLE_DEVICES": "none"}, set()),
    ({"HABANA_VISIBLE_DEVICES": ""}, set()),
    ({"HABANA_VISIBLE_DEVICES": "3,1"}, _ids("habana", 1, 3)),
    ({"HABANA_VISIBLE_DEVICES": "1, 9, 3"}, _ids("habana", 1, 3)),  # a set: an unknown index hides nothing after it
    ({"HABANA_VISIBLE_MODULES": "0,1"}, _ids("habana", 2, 3)),  # module ids, not indices
    ({"HABANA_VISIBLE_MODULES": "4,5,6,7"}, _ids("habana", 4, 5, 6, 7)),
    ({"HABANA_VISIBLE_DEVICES": "0,1,2", "HABANA_VISIBLE_MODULES": "0,2,3"}, _ids("habana", 0, 1, 2)),
    ({"HABANA_VISIBLE_DEVICES": "0,1", "HABANA_VISIBLE_MODULES": "0"}, set()),  # module 0 is device 2, not left
])
def test_habana_device_and_module_lists(environ, expected):
    """HABANA_VISIBLE_DEVICES picks by device index, HABANA_VISIBLE_MODULES by OAM module id among what is left."""
    assert visible_devices(environ, GAUDI) == expected


def test_a_gaudi_without_a_module_id_is_hidden_by_a_module_list():
    """A device hl-smi gave no module id for is not in any module list, so a module list hides it."""
    devices = [*GAUDI[:2], _device("habana", 8, "npu", HabanaDetails(module_id=None))]
    assert visible_devices({"HABANA_VISIBLE_MODULES": "2,3"}, devices) == _ids("habana", 0, 1)
    assert visible_devices({}, devices) == _ids("habana", 0, 1, 8)


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, _ids("google", 0, 1, 2, 3)),
    ({"TPU_VISIBLE_CHIPS": "0"}, _ids("google", 0)),
    ({"TPU_VISIBLE_CHIPS": "2,3"}, _ids("google", 2, 3)),
    ({"TPU_VISIBLE_DEVICES": "1"}, _ids("google", 1)),  # the older name, still a libtpu flag
    ({"TPU_VISIBLE_CHIPS": "3", "TPU_VISIBLE_DEVICES": "0,1"}, _ids("google", 3)),  # the current name wins
    ({"TPU_VISIBLE_CHIPS": ""}, set()),
])
def test_tpu_chip_lists(environ, expected):
    """TPU_VISIBLE_CHIPS (else TPU_VISIBLE_DEVICES) keeps the chips it lists by index."""
    assert visible_devices(environ, TPU) == expected


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, _ids("aws", 0, 1)),
    ({"NEURON_RT_VISIBLE_CORES": ""}, _ids("aws", 0, 1)),  # empty is the runtime's default: every core
    ({"NEURON_RT_VISIBLE_CORES": "0"}, _ids("aws", 0)),
    ({"NEURON_RT_VISIBLE_CORES": "3"}, _ids("aws", 1)),  # core 3 is device 1's second core
    ({"NEURON_RT_VISIBLE_CORES": "1-2"}, _ids("aws", 0, 1)),  # an inclusive range across the device boundary
    ({"NEURON_RT_VISIBLE_CORES": "2-3"}, _ids("aws", 1)),
    ({"NEURON_RT_VISIBLE_CORES": "0,3"}, _ids("aws", 0, 1)),
    ({"NEURON_RT_VISIBLE_CORES": "4-7"}, set()),  # cores this instance does not have
    ({"NEURON_RT_NUM_CORES": "1"}, _ids("aws", 0, 1)),  # a count names no core: nothing is hidden
])
def test_neuron_core_lists_select_the_devices_holding_them(environ, expected):
    """NEURON_RT_VISIBLE_CORES keeps each Neuron device that holds a listed NeuronCore."""
    assert visible_devices(environ, NEURON) == expected


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, _ids("intel", 0, 1, 2)),
    ({"ZE_AFFINITY_MASK": ""}, _ids("intel", 0, 1, 2)),
    ({"ZE_AFFINITY_MASK": "1"}, _ids("intel", 1)),
    ({"ZE_AFFINITY_MASK": "2,0"}, _ids("intel", 0, 2)),
    ({"ZE_AFFINITY_MASK": "0.1,2.0"}, _ids("intel", 0, 2)),  # device.sub-device keeps the card
    ({"ZE_AFFINITY_MASK": "5"}, set()),
])
def test_level_zero_affinity_mask_device_entries(environ, expected):
    """ZE_AFFINITY_MASK keeps the cards its device (or device.sub-device) entries name."""
    assert visible_devices(environ, INTEL) == expected


def test_each_vendor_reads_only_its_own_variables():
    """One vendor's list never hides another's devices, and each list applies to its vendor alone."""
    nvidia = _device("nvidia", 0)
    devices = [*GAUDI[:2], *TPU[:2], *NEURON, *INTEL[:2], nvidia]
    environ = {"HABANA_VISIBLE_DEVICES": "1", "TPU_VISIBLE_CHIPS": "0", "NEURON_RT_VISIBLE_CORES": "2",
               "ZE_AFFINITY_MASK": "1", "CUDA_VISIBLE_DEVICES": "0"}
    assert visible_devices(environ, devices) == {
        ("habana", 1), ("google", 0), ("aws", 1), ("intel", 1), ("nvidia", 0)}
    assert visible_devices({"CUDA_VISIBLE_DEVICES": ""}, devices) == (
        _ids("habana", 0, 1) | _ids("google", 0, 1) | _ids("aws", 0, 1) | _ids("intel", 0, 1))
