"""records.positional: the record its class would build, and a refusal for classes whose __init__ does more."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracklab_sysmon import model, wire
from tracklab_sysmon.records import positional

_OPTIONAL_FLOAT = st.none() | st.floats(allow_nan=False)


@given(id_=st.integers(0, 64), utilization=_OPTIONAL_FLOAT, temperature=_OPTIONAL_FLOAT, power=_OPTIONAL_FLOAT,
       status=st.none() | st.text(max_size=12), energy=_OPTIONAL_FLOAT, actual=_OPTIONAL_FLOAT)
def test_an_intel_sample_is_the_one_its_classes_build(id_, utilization, temperature, power, status, energy, actual):
    """Field by field, type, equality, hash, repr, the wire form and a pickle round trip: the same record."""
    memory = model.AcceleratorMemory(1, 2, 50.0)
    temps = (model.TemperatureSensor("pkg", 58.0),)
    engines = (model.EngineUse("render", 1.5),)
    frequency = model.GtFrequency(actual, 2850.0)
    readings = model.IntelReadings(frequency, energy, temps, engines)
    details = model.IntelDetails("card0", "xe", "0000:03:00.0", status, readings)
    sample = model.AcceleratorSample(id_, "gpu", "Intel GPU", utilization, memory, temperature, power, None, "intel",
                                     None, details)
    built = positional(model.AcceleratorSample)(
        id_, "gpu", "Intel GPU", utilization, memory, temperature, power, None, "intel", None,
        positional(model.IntelDetails)("card0", "xe", "0000:03:00.0", status,
                                       positional(model.IntelReadings)(frequency, energy, temps, engines)))
    assert type(built) is model.AcceleratorSample and type(built.details) is model.IntelDetails
    assert type(built.details.readings) is model.IntelReadings  # type: ignore[union-attr]
    assert built == sample and hash(built) == hash(sample) and repr(built) == repr(sample)
    assert dataclasses.astuple(built) == dataclasses.astuple(sample)
    assert wire.encode(built) == wire.encode(sample)
    assert pickle.loads(pickle.dumps(built)) == sample


def test_a_built_record_stays_frozen():
    built = positional(model.GtFrequency)(1.0, 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.actual = 3.0  # type: ignore[misc]
    assert built == model.GtFrequency(1.0, 2.0)


def test_every_field_is_asked_for_by_position():
    build = positional(model.GtFrequency)
    with pytest.raises(TypeError):
        build(1.0)  # a default is not filled in: every field by position
    with pytest.raises(TypeError):
        build(actual=1.0, max=2.0)  # type: ignore[call-arg]


@dataclasses.dataclass(frozen=True, slots=True)
class _Checked:
    value: int

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError(self.value)


@dataclasses.dataclass(frozen=True)
class _NoSlots:
    value: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Hidden:
    value: int
    cache: int = dataclasses.field(default=0, init=False)


@dataclasses.dataclass(frozen=True, slots=True)
class _WithInitVar:
    value: int
    scale: dataclasses.InitVar[int] = 1


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class _OwnInit:
    value: int

    def __init__(self, value: int) -> None:
        object.__setattr__(self, "value", abs(value))


class _Plain:
    __slots__ = ("value",)


@pytest.mark.parametrize("cls", [_Checked, _NoSlots, _Hidden, _WithInitVar, _OwnInit, _Plain])
def test_a_class_whose_init_does_more_is_refused(cls):
    with pytest.raises(TypeError):
        positional(cls)
