"""Intel Gaudi: the hl-smi CSV row parser, and the collector over the hl-smi stand-in in its query loop."""

from __future__ import annotations

import pathlib

import pytest
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st
from test_supervise import wait_for

from tracklab_sysmon import wire
from tracklab_sysmon.collectors.gaudi import GaudiCollector, hl_smi_arguments
from tracklab_sysmon.collectors.gaudi_csv import FIELDS, MIB, parse_row
from tracklab_sysmon.collectors.supervise import Backoff
from tracklab_sysmon.errors import ParseError, SourceError, Unavailable
from tracklab_sysmon.model import EccErrors, HabanaDetails

STANDIN = FIXTURES / "hl-smi"
BLOCKS = (STANDIN / "rows-gaudi2.csv").read_text().strip().split("\n\n")


def test_a_recorded_row_in_wire_units():
    """Device 2 of block 0: %, MiB turned into bytes, W, °C, bus id, module id and volatile ECC counts."""
    row = parse_row(BLOCKS[0].splitlines()[2])
    assert (row.id, row.type, row.vendor, row.name) == (2, "npu", "habana", "HL-225")
    assert (row.utilization, row.power, row.temperature, row.fan_speed) == (97.0, 420.0, 51.0, None)
    assert (row.memory.used, row.memory.total, row.memory.percentage) == (90112 * MIB, 98304 * MIB, 91.67)
    assert row.uuid == "01P0-HL2080A0-15-TNCN02-00-02"
    assert row.details == HabanaDetails(bus_id="0000:39:00.0", module_id=0, ecc_errors=EccErrors(0, 0))
    assert wire.accelerator_to_wire(row)["moduleId"] == 0


def test_missing_values_are_null_and_stray_units_are_tolerated():
    """N/A-like cells are null, never 0; a unit left in by an hl-smi ignoring nounits still reads."""
    row = parse_row("1, N/A, HL-225, [N/A], N/A, 15 %, 512 MiB, 98304 MiB, 103 W, 36 C, Not Supported, [N/A]")
    assert (row.utilization, row.memory.used, row.power, row.temperature) == (15.0, 512 * MIB, 103.0, 36.0)
    assert (row.uuid, row.details.bus_id, row.details.module_id, row.details.ecc_errors) == (
        None, None, None, EccErrors(None, None))


@pytest.mark.parametrize("reading", ["101", "-1", "nan", "1e400", "abc"])
def test_impossible_utilisation_is_null(reading):
    """A utilisation outside 0-100 % or not a number is garbage: null, not clamped."""
    assert parse_row(f"0, 0, HL-225, u, b, {reading}, 1, 2, 3, 4, 0, 0").utilization is None


@pytest.mark.parametrize("line", ["", "Error: hlml_device_get_utilization failed", "0, 1, 2",
                                  "x, 0, HL-225, u, b, 1, 1, 2, 3, 4, 0, 0"])
def test_lines_that_are_not_device_rows_raise_parse_error(line):
    """Wrong column count or no device index: a ParseError quoting the line."""
    with pytest.raises(ParseError, match="hl-smi printed"):
        parse_row(line)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=120))
def test_any_text_is_a_row_or_a_parse_error(text):
    """Arbitrary text never raises anything but ParseError, and a parsed row always encodes."""
    try:
        row = parse_row(text)
    except ParseError:
        return
    wire.encode(wire.accelerator_to_wire(row))


_cell = st.integers(0, 100)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 63), _cell, st.integers(0, 2**20), st.integers(1, 2**20), st.integers(0, 2000),
       st.integers(-40, 150))
def test_generated_rows_come_back_exactly(index, util, used, total, power, temp):
    """Rows built from numbers give those numbers back, memory scaled from MiB to bytes."""
    row = parse_row(f"{index}, 0, HL-325L, u, b, {util}, {used}, {total}, {power}, {temp}, 1, 2")
    assert (row.id, row.utilization, row.memory.used, row.memory.total, row.power, row.temperature) == (
        index, float(util), used * MIB, total * MIB, float(power), float(temp))


def test_arguments_ask_the_documented_fields_in_a_loop():
    """One long-lived child: --query-aip with every FIELDS column, CSV without header or units, -l seconds."""
    assert hl_smi_arguments(0.5) == [f"--query-aip={','.join(FIELDS)}", "--format=csv,noheader,nounits", "-l", "1"]
    assert hl_smi_arguments(3.0)[-1] == "3"


# ---------------------------------------------------------------- the collector over the stand-in


@pytest.fixture
def standin(tmp_path: pathlib.Path, monkeypatch) -> pathlib.Path:
    control = tmp_path / "hlsmi-control"
    control.write_text("report 0")
    monkeypatch.setenv("PATH", f"{STANDIN}:{pathlib.os.environ['PATH']}")
    monkeypatch.setenv("HLSMI_STANDIN_PERIOD", "0.05")
    monkeypatch.setenv("HLSMI_STANDIN_CONTROL", str(control))
    return control


def _devices(collector: GaudiCollector) -> tuple:
    try:
        return collector.collect(0.0)
    except (Unavailable, SourceError):
        return ()


def test_missing_hl_smi_is_unavailable(monkeypatch, tmp_path):
    """No hl-smi on PATH: unavailable with where it looked."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(Unavailable, match=r"^hl-smi not found \(looked in PATH\)$"):
        GaudiCollector().collect(0.0)


def test_collector_keeps_the_newest_row_of_every_device(standin):
    """Eight devices from the loop's rows; a new block replaces each device's row."""
    collector = GaudiCollector(backoff=Backoff(0.05, 0.2))
    try:
        wait_for(lambda: len(_devices(collector)) == 8, "eight rows")
        assert [d.utilization for d in collector.collect(0.0)] == [15.0, 0.0, 97.0, 100.0, 0.0, 0.0, 3.0, 0.0]
        standin.write_text("report 1")
        wait_for(lambda: [d.utilization for d in _devices(collector)] == [0.0, 0.0, 12.0, 0, 0, 0, 0, 0], "block 1")
        assert collector.collect(0.0)[2].details.ecc_errors == EccErrors(2, 0)
    finally:
        collector.close()


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("exit 4", "hl-smi exited with status 4 (stderr: hl-smi stand-in: told to exit); restarting"),
        ("garbage", "hl-smi printed a line with 1 columns, not 12"),
        ("hang", "hl-smi printed nothing for 0.5 s (hung; killed); restarting"),
    ],
)
def test_exit_garbage_and_hang_are_errors_that_recover(standin, mode, reason):
    """Each failure is a SourceError naming it; the next good rows bring the devices back."""
    collector = GaudiCollector(stall_after=0.5, backoff=Backoff(0.05, 0.2))
    try:
        wait_for(lambda: len(_devices(collector)) == 8, "eight rows")
        standin.write_text(mode)

        def failing() -> bool:
            try:
                collector.collect(0.0)
            except SourceError as exc:
                return reason in str(exc)
            return False

        wait_for(failing, f"the {mode} to show")
        standin.write_text("report 1")
        wait_for(lambda: [d.utilization for d in _devices(collector)][:3] == [0.0, 0.0, 12.0], "recovery")
    finally:
        collector.close()


def test_a_device_no_longer_listed_drops_out_after_the_stale_window(tmp_path, monkeypatch):
    """Rows older than the stale window are not published: a device hl-smi stopped listing goes away."""
    rows = BLOCKS[0].splitlines()
    fake = tmp_path / "bin"
    fake.mkdir()
    script = "#!/bin/sh\n" + "".join(f"echo '{r}'\n" for r in rows) + \
        f"while :; do echo '{rows[0]}'; echo '{rows[1]}'; sleep 0.05; done\n"
    (fake / "hl-smi").write_text(script)
    (fake / "hl-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{pathlib.os.environ['PATH']}")
    clock = [100.0]
    collector = GaudiCollector(clock=lambda: clock[0])
    try:
        wait_for(lambda: len(_devices(collector)) == 8, "eight rows")
        clock[0] += collector._source.stale_after + 1  # rows 2-7 are now older than the window; 0 and 1 keep coming
        wait_for(lambda: [d.id for d in _devices(collector)] == [0, 1], "the unlisted devices to drop out")
    finally:
        collector.close()


def test_a_silent_tool_is_an_error_once_its_output_is_stale(tmp_path, monkeypatch):
    """hl-smi alive but printing nothing newer than the stale window: an error saying for how long, not []."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "hl-smi").write_text("#!/bin/sh\n" + "".join(f"echo '{r}'\n" for r in BLOCKS[0].splitlines())
                                 + "exec sleep 60\n")
    (fake / "hl-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{pathlib.os.environ['PATH']}")
    clock = [100.0]
    collector = GaudiCollector(clock=lambda: clock[0])
    try:
        wait_for(lambda: len(_devices(collector)) == 8, "eight rows")
        clock[0] += collector._source.stale_after + 1
        with pytest.raises(SourceError, match=r"^no output from hl-smi for 6\.0 s$"):
            collector.collect(0.0)
    finally:
        collector.close()


def test_the_tool_does_not_inherit_the_service_token(tmp_path, monkeypatch):
    """The service's TRACKLAB_SYSMON_TOKEN is not in the child's environment (the row's name shows what it saw)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "hl-smi").write_text('#!/bin/sh\nwhile :; do echo "0, 0, ${TRACKLAB_SYSMON_TOKEN:-no-token}, u, b, 1, 1, '
                                 '2, 3, 4, 0, 0"; sleep 0.05; done\n')
    (fake / "hl-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{pathlib.os.environ['PATH']}")
    monkeypatch.setenv("TRACKLAB_SYSMON_TOKEN", "s3cret")
    collector = GaudiCollector()
    try:
        wait_for(lambda: len(_devices(collector)) == 1, "the row")
        assert collector.collect(0.0)[0].name == "no-token"
    finally:
        collector.close()
