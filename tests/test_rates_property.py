"""Property tests of CounterRates: resets, 32- and 64-bit wraps and transient dips never make a spike."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tracklab_sysmon.rates import CounterRates

EVENTS = ("normal", "normal", "normal", "reset", "dip")
step = st.tuples(
    st.floats(min_value=0.001, max_value=10.0, allow_nan=False),  # seconds since the previous reading
    st.integers(min_value=0, max_value=2**40),  # bytes truly transferred in that window
    st.sampled_from(EVENTS),
    st.floats(min_value=0.0, max_value=1.0),  # for a reset: the share transferred before it
)


def simulate(
    width: int, start: int, steps: list[tuple[float, int, str, float]]
) -> tuple[list[float], list[int], list[int | None]]:
    """(times, true cumulative transfer, readings): the counter wraps at 2**width, resets, and dips to 0."""
    modulus = 2**width
    times: list[float] = [0.0]
    truth = [0]
    readings: list[int | None] = [start % modulus]
    counter = start
    for dt, amount, event, before in steps:
        if event == "reset":  # the counter restarts at 0 inside the window: what came before it is lost
            counter = amount - int(amount * before)
        else:
            counter += amount
        times.append(times[-1] + dt)
        truth.append(truth[-1] + amount)
        # A dip: one all-zero line. After a zero reading it would be a true-looking "no traffic",
        # which no rule can tell from the truth, so the model only dips from a non-zero reading.
        readings.append(0 if event == "dip" and readings[-1] else counter % modulus)
    return times, truth, readings


class ShallowRates(CounterRates):
    """Two baselines only, so the property also covers a counter that falls more often than the cap."""

    max_baselines = 2


def rates_of(times: list[float], readings: list[int | None], tracker: CounterRates | None = None) -> list[float | None]:
    tracker = tracker if tracker is not None else CounterRates()
    return [tracker.rate("eth0", value, now) for now, value in zip(times, readings, strict=True)]


@settings(max_examples=400, deadline=None)
@given(
    width=st.sampled_from((32, 64)),
    start=st.integers(min_value=0, max_value=2**64 - 1),
    steps=st.lists(step, min_size=1, max_size=30),
    shallow=st.booleans(),
)
def test_no_rate_exceeds_what_was_transferred(
    width: int, start: int, steps: list[tuple[float, int, str, float]], shallow: bool
) -> None:
    """Every rate is finite and >= 0, at most the true mean over some window ending now, and the bytes
    the rates account for never exceed the bytes truly transferred, at every point of the sequence."""
    times, truth, readings = simulate(width, start, steps)
    rates = rates_of(times, readings, ShallowRates() if shallow else CounterRates())
    reported = 0.0
    for i in range(1, len(times)):
        rate = rates[i]
        assert rate is not None and math.isfinite(rate) and rate >= 0
        best_mean = max((truth[i] - truth[j]) / (times[i] - times[j]) for j in range(i))
        assert rate <= best_mean * (1 + 1e-9) + 1e-9, (i, rate, best_mean)
        reported += rate * (times[i] - times[i - 1])
        assert reported <= (truth[i] - truth[0]) * (1 + 1e-9) + 1e-6, (i, reported, truth[i])


def test_a_transient_all_zero_line_is_a_dip_not_a_reset() -> None:
    """1000, 0, 1010 at one-second steps: 0 during the dip, then 10 bytes over the 2 s since 1000."""
    assert rates_of([0.0, 1.0, 2.0], [1000, 0, 1010]) == [0.0, 0.0, 5.0]


def test_a_counter_that_rises_below_its_old_value_was_reset_and_counts_from_there() -> None:
    """1000, 10, 30, 70: 30 > 10 proves a reset; it rates 20 over the 2 s since 1000, then 40/s from 30."""
    assert rates_of([0.0, 1.0, 2.0, 3.0], [1000, 10, 30, 70]) == [0.0, 0.0, 10.0, 40.0]


def test_two_zero_lines_in_a_row_are_still_a_dip_when_the_counter_comes_back() -> None:
    """1000, 0, 0, 1030: the return above 1000 rates 30 bytes over the 3 s since the last good reading."""
    assert rates_of([0.0, 1.0, 2.0, 3.0], [1000, 0, 0, 1030]) == [0.0, 0.0, 0.0, 10.0]


def test_a_32_bit_wrap_reads_as_a_reset_never_as_a_huge_rate() -> None:
    """A wrap from near 2**32 to 5 rates 0, then counting resumes from the wrapped value."""
    assert rates_of([0.0, 1.0, 2.0, 3.0], [2**32 - 10, 5, 105, 205]) == [0.0, 0.0, 50.0, 100.0]


def test_unknown_value_rates_unknown_and_keeps_the_baseline() -> None:
    """None (a counter too wide to publish) gives None; the next known reading rates from the last good one."""
    assert rates_of([0.0, 1.0, 2.0], [100, None, 300]) == [0.0, None, 100.0]


def test_retain_forgets_devices_that_went_away() -> None:
    """A device dropped by `retain` starts afresh (rate 0) when it comes back."""
    tracker = CounterRates()
    tracker.rate("sdb", 100, 0.0)
    tracker.retain([])
    assert tracker.rate("sdb", 5000, 1.0) == 0.0
