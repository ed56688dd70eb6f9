"""CounterColumn (NVLink's rates, one call per GPU) against CounterRates: the same rule, reading for reading."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tracklab_sysmon.rates import CounterColumn, CounterRates, cents

# Small values and few of them, so dips, flat runs after a drop, resets and full baseline lists all occur.
reading = st.one_of(st.none(), st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=2**64 - 1))
# Clock steps as a monotonic clock gives them (ms to seconds), and one that stands still or steps back.
step = st.one_of(st.sampled_from((-1.0, 0.0)), st.floats(min_value=0.001, max_value=5.0))
tick = st.tuples(step, st.lists(reading, min_size=3, max_size=3))


@settings(max_examples=500, deadline=None)
@given(ticks=st.lists(tick, min_size=1, max_size=40))
def test_column_rates_equal_counter_rates_rounded_to_cents(ticks: list[tuple[float, list[int | None]]]) -> None:
    """Each counter of a column rates exactly as CounterRates.rate on its own key, rounded as `cents` rounds,
    whatever the readings (None, dips, resets, a clock that stands still or steps back)."""
    column, single = CounterColumn(3), CounterRates()
    now = 0.0
    for step, values in ticks:
        now += step
        expected = [cents(single.rate(i, value, now)) for i, value in enumerate(values)]
        assert column.rates(values, now) == expected


def test_a_dip_then_a_reset_rate_as_counter_rates_says() -> None:
    """1000, 0 (dip), 10 (a reset proven), 30: 0, 0, 10 bytes over the 2 s since 1000 = 5.0, then 20.0."""
    column = CounterColumn(1)
    assert [column.rates([v], float(t))[0] for t, v in enumerate([1000, 0, 10, 30])] == [0.0, 0.0, 5.0, 20.0]


def test_rates_are_rounded_to_cents_half_up() -> None:
    """1 byte over 3 s is 0.33 per second; 2 bytes over 3 s is 0.67."""
    column = CounterColumn(2)
    column.rates([0, 0], 0.0)
    assert column.rates([1, 2], 3.0) == [0.33, 0.67]
