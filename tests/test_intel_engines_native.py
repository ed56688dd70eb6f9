"""The Intel engine meter in C (native/engines.c) against its Python twin `EngineMeter`: the same `CardUse`s, tick by
tick, whatever the clients' texts, counters, sharing and cards do."""

from __future__ import annotations

import pathlib

import pytest
from conftest import native_module
from hypothesis import given, settings
from hypothesis import strategies as st

from tracklab_sysmon.collectors import intel_meter
from tracklab_sysmon.collectors.intel_cards import IntelCard
from tracklab_sysmon.collectors.intel_engines import CardUse, EngineMeter


@pytest.fixture(scope="module")
def c_meter():
    """The C meter's class; skip locally, fail under TRACKLAB_SYSMON_NATIVE=require, where it was not built."""
    native_module()
    return intel_meter.select_engine_meter("require")[0]


PDEVS = ("0000:0a:00.0", "0000:0b:00.0", "0000:3c:00.0")


def _card(n: int, discrete: bool, engines: tuple[str, ...]) -> IntelCard:
    return IntelCard(index=n, card=f"card{n}", driver="xe", bus_id=PDEVS[n], name="Intel GPU", engines=engines,
                     vram_total=2**34 if discrete else None, discrete=discrete, status="", act_freq=None,
                     max_freq=None, energy=None, temps=())


# A card: discrete or not, the classes its sysfs lists.
CARDS = st.tuples(st.booleans(), st.sampled_from([("render", "copy", "video", "video-enhance", "compute"),
                                                  ("render", "video"), ()]))
NUMBER = st.sampled_from([0, 1, 10**6, 5 * 10**8, 10**9, 3 * 10**9, 10**10, 10**17 + 3])
# An engine line: its name, busy, the clock's value (None: ns, i915's form) and capacity (None: no line).
ENGINE = st.tuples(st.sampled_from(["rcs", "bcs", "vcs", "vecs", "ccs", "render", "video-enhance", "compute",
                                    "rcs0", "ccs12", "gsccs", "copy"]),
                   NUMBER, st.one_of(st.none(), NUMBER), st.sampled_from([None, 0, 1, 2, 4]))
REGION = st.tuples(st.sampled_from(["vram0", "vram1", "local0", "system", "gtt", "stolen"]),
                   st.sampled_from(["total", "resident", "memory"]), st.integers(0, 2**20),
                   st.sampled_from(["", " KiB", " MiB"]))
# One fd's text this tick: None (closed), "socket" (not a DRM client), or a client: id, card (3: of no card;
# upper: its address in capitals), engines, regions, and an odd byte (text the C parser leaves to Python).
CLIENT = st.tuples(st.integers(1, 4), st.integers(0, 3), st.booleans(), st.lists(ENGINE, max_size=6),
                   st.lists(REGION, max_size=4), st.sampled_from(["", "", "", "é"]))
TEXT = st.one_of(st.none(), st.just("socket"), CLIENT)
# The client's engines moved: what each busy time and clock adds (busy may go back; None: cycles become ns and
# ns cycles).
MOVE = st.tuples(st.just("move"), st.sampled_from([0, 10**6, 10**8, 10**8, -10**8]),
                 st.sampled_from([0, 10**9, 10**9, None]))
# A tick: each of 5 fds' text (as it was, moved or another), the seconds since the last (0: no interval), a walk
# or not, and the cards afresh (a rescan) or not.
TICK = st.tuples(st.lists(st.one_of(st.just("same"), MOVE, MOVE, TEXT), min_size=5, max_size=5),
                 st.sampled_from([0.0, 0.5, 1.0, 1.0]), st.booleans(),
                 st.one_of(st.none(), st.lists(CARDS, min_size=1, max_size=3)))


def _text(spec: tuple, huge: int) -> str:
    client_id, card, upper, engines, regions, odd = spec
    pdev = (PDEVS[card] if card < 3 else "0000:0d:00.0").upper() if upper else \
        (PDEVS[card] if card < 3 else "0000:0d:00.0")
    lines = ["pos:\t0", "drm-driver:\txe", f"drm-client-id:\t{client_id}", f"drm-pdev:\t{pdev}"]
    for name, busy, clock, capacity in engines:
        if clock is None:
            lines.append(f"drm-engine-{name}:\t{busy + huge} ns")
        else:
            lines += [f"drm-cycles-{name}:\t{busy}", f"drm-total-cycles-{name}:\t{clock}"]
        if capacity is not None:
            lines.append(f"drm-engine-capacity-{name}:\t{capacity}")
    lines += [f"drm-{kind}-{region}:\t{size}{unit}" for region, kind, size, unit in regions]
    return "\n".join(lines) + f"\n{odd}\n"


def _write(path: pathlib.Path, spec, huge: int) -> None:
    if spec is None:
        path.unlink(missing_ok=True)
    elif spec == "socket":
        path.write_text("pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t4242\n")
    else:
        path.write_text(_text(spec, huge), encoding="utf-8")


def _clock(clock: int | None, adds: int | None) -> int | None:
    if adds is None:
        return 10**10 if clock is None else None
    return None if clock is None else clock + adds


def _run(root: pathlib.Path, meter_class, ticks, huge: int = 0,
         huge_from: int = 0) -> tuple[list[list[CardUse]], list[list[CardUse]]]:
    """Both meters through the ticks on one tree; `huge` is added to ns counters written from tick `huge_from`."""
    fds = [root / f"proc/{700 + k % 2}/fdinfo/{k}" for k in range(5)]
    for fd in fds:
        fd.parent.mkdir(parents=True, exist_ok=True)
    c, python = meter_class(str(root / "proc"), 1e9, None), EngineMeter(str(root / "proc"), 1e9, None)
    cards = {PDEVS[0]: _card(0, True, ("render",))}
    now, got, want, last = 0.0, [], [], [None] * len(fds)
    for n, (texts, elapsed, walk, rescan) in enumerate(ticks):
        for k, (fd, spec) in enumerate(zip(fds, texts, strict=True)):
            if spec == "same":
                continue
            if isinstance(spec, tuple) and spec[0] == "move":
                if not isinstance(last[k], tuple):
                    continue
                _, busy, clock = spec
                client_id, card, upper, engines, regions, odd = last[k]
                spec = (client_id, card, upper, [(name, max(0, b + busy), _clock(c, clock), capacity)
                                                 for name, b, c, capacity in engines], regions, odd)
            last[k] = spec
            _write(fd, spec, huge if n >= huge_from else 0)
        if rescan is not None:
            cards = {PDEVS[n]: _card(n, discrete, engines) for n, (discrete, engines) in enumerate(rescan)}
        if walk:
            c.walk._walked_at = python.walk._walked_at = None
        now += elapsed
        got.append(c.read(now, cards))
        want.append(python.read(now, cards))
    return got, want


@settings(max_examples=150, deadline=None)
@given(ticks=st.lists(TICK, min_size=1, max_size=10))
def test_the_c_meter_gives_the_python_meters_uses(c_meter, tmp_path_factory, ticks):
    root = tmp_path_factory.mktemp("meter")
    got, want = _run(root, c_meter, [(texts, elapsed, walk or n == 0, rescan)
                                     for n, (texts, elapsed, walk, rescan) in enumerate(ticks)])
    assert got == want


@settings(max_examples=60, deadline=None)
@given(ticks=st.lists(TICK, min_size=2, max_size=8), huge=st.sampled_from([2**63, 2**64, 10**25]),
       huge_from=st.integers(1, 4))
def test_numbers_past_what_c_holds_hand_over_to_the_python_meter(c_meter, tmp_path_factory, ticks, huge, huge_from):
    """An engine's ns counter at 2^63 or more (the kernel's u64 does not reach 2^64): the same uses after too."""
    root = tmp_path_factory.mktemp("meter")
    got, want = _run(root, c_meter, [(texts, elapsed, walk or n == 0, rescan)
                                     for n, (texts, elapsed, walk, rescan) in enumerate(ticks)], huge, huge_from)
    assert got == want


def test_a_shared_client_counts_once_and_a_counter_going_back_gives_no_share(c_meter, tmp_path):
    """Exact values: client 1 through two fds counts once; its rcs going back is ignored until it catches up."""
    spec = (1, 0, False, [("rcs", 0, 10**9, None)], [("vram0", "resident", 4, " KiB")], "")
    moved = (1, 0, True, [("rcs", 5 * 10**8, 2 * 10**9, None)], [("vram0", "resident", 4, " KiB")], "")
    back = (1, 0, False, [("rcs", 10**8, 3 * 10**9, None)], [("vram0", "resident", 4, " KiB")], "")
    caught = (1, 0, False, [("rcs", 6 * 10**8, 4 * 10**9, None)], [("vram0", "resident", 4, " KiB")], "")
    ticks = [([spec, spec, None, None, None], 0.0, True, None),
             ([moved, moved, "same", "same", "same"], 1.0, False, None),
             ([back, back, "same", "same", "same"], 1.0, False, None),
             ([caught, caught, "same", "same", "same"], 1.0, False, None)]
    got, want = _run(tmp_path, c_meter, ticks)
    assert got == want
    assert [use[0] for use in got] == [CardUse((("render", None),), 4096), CardUse((("render", 50.0),), 4096),
                                       CardUse((("render", 0.0),), 4096), CardUse((("render", 5.0),), 4096)]


def test_the_backend_follows_the_native_setting(c_meter):
    assert intel_meter.select_engine_meter("off") == (EngineMeter, "python")
    assert intel_meter.select_engine_meter("require")[1] == "cffi"


def test_a_counter_past_64_bits_hands_the_kept_times_over(c_meter, tmp_path):
    """The tick whose ns counter C cannot hold measures from the times C kept: 2^63 ns more in 1 s is 100 %."""
    spec = (1, 0, False, [("render", 0, None, None)], [], "")
    ticks = [([spec, None, None, None, None], 0.0, True, None)] + \
        [([("move", 10**8, 0), "same", "same", "same", "same"], 1.0, False, None)] * 3
    got, want = _run(tmp_path, c_meter, ticks, 2**63, 2)
    assert got == want
    assert [dict(use[0].engines)["render"] for use in got] == [None, 10.0, 100.0, 10.0]
