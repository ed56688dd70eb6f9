"""RAPL powercap zones from a fixture tree: discovery, wraps undone, root-only counters, failures and recovery."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from conftest import FIXTURES, require_command
from hypothesis import given
from hypothesis import strategies as st

from tracklab_sysmon.collectors.base import Partial
from tracklab_sysmon.collectors.rapl import ROOT_ONLY, RaplCollector, unwrap, zone_domain
from tracklab_sysmon.errors import Unavailable
from tracklab_sysmon.model import EnergySample
from tracklab_sysmon.sampler import Sampler

PACKAGE_RANGE = 262143328850


def rapl_tree(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "rapl"
    shutil.copytree(FIXTURES / "rapl", root)
    return root / "sys"


def energy_file(sys_root: pathlib.Path, zone: str) -> pathlib.Path:
    return sys_root / "class/powercap" / zone / "energy_uj"


def joules(sample: EnergySample | Partial[EnergySample]) -> dict[str, float]:
    value = sample.value if isinstance(sample, Partial) else sample
    return {z.zone: z.joules for z in value.cpu}


def test_zones_packages_and_domains_without_the_mmio_duplicate(tmp_path):
    """Packages come before their subzones, which take their package's number; intel-rapl-mmio is left out."""
    sample = RaplCollector(str(rapl_tree(tmp_path))).collect(0.0)
    assert isinstance(sample, EnergySample)
    assert [(z.zone, z.domain, z.package) for z in sample.cpu] == [
        ("intel-rapl:0", "package", 0), ("intel-rapl:0:0", "core", 0), ("intel-rapl:0:1", "dram", 0),
        ("intel-rapl:1", "package", 1), ("intel-rapl:1:0", "core", 1), ("intel-rapl:1:1", "dram", 1),
    ]
    assert joules(sample)["intel-rapl:0"] == 262143.0 and joules(sample)["intel-rapl:1:1"] == 2500.0
    assert all(z.watts is None for z in sample.cpu)  # the ledger, not the collector, gives watts


def test_a_wrap_between_two_ticks_is_undone(tmp_path):
    """package-0 runs 328850 µJ below its range; read back at 1671150 µJ it has used 2 J, not minus 262 kJ."""
    sys_root = rapl_tree(tmp_path)
    rapl = RaplCollector(str(sys_root))
    rapl.collect(0.0)
    energy_file(sys_root, "intel-rapl:0").write_text("1671150\n")
    energy_file(sys_root, "intel-rapl:0:1").write_text("3000500000\n")  # dram +0.5 J, no wrap
    after = joules(rapl.collect(1.0))
    assert after["intel-rapl:0"] == 262145.0 and after["intel-rapl:0:1"] == 3000.5
    energy_file(sys_root, "intel-rapl:0").write_text("2671150\n")
    assert joules(rapl.collect(2.0))["intel-rapl:0"] == 262146.0  # keeps counting after the wrap


def test_a_value_beyond_the_range_is_left_out_then_counting_resumes(tmp_path):
    """A reading above max_energy_range_uj (or garbage) drops that zone for the tick (degraded, saying why);
    the next good reading starts afresh from the total kept so far."""
    sys_root = rapl_tree(tmp_path)
    rapl = RaplCollector(str(sys_root))
    rapl.collect(0.0)
    energy_file(sys_root, "intel-rapl:1").write_text(f"{PACKAGE_RANGE + 1}\n")
    partial = rapl.collect(1.0)
    assert isinstance(partial, Partial) and "intel-rapl:1/energy_uj" in partial.reason
    assert "intel-rapl:1" not in joules(partial) and len(partial.value.cpu) == 5
    energy_file(sys_root, "intel-rapl:1").write_text("120001000000\n")
    assert joules(rapl.collect(2.0))["intel-rapl:1"] == 120000.0  # the interval with the bad value is lost
    energy_file(sys_root, "intel-rapl:1").write_text("120003000000\n")
    assert joules(rapl.collect(3.0))["intel-rapl:1"] == 120002.0


def test_no_powercap_is_unavailable_with_the_reason(tmp_path):
    """A machine (or VM) without RAPL zones reports where it looked and why there may be none."""
    with pytest.raises(Unavailable, match=r"no RAPL zone under .*/class/powercap \(no intel_rapl driver, or a vir"):
        RaplCollector(str(tmp_path / "sys")).collect(0.0)


PRINT_OUTCOME = """
import sys
from tracklab_sysmon.collectors.rapl import RaplCollector
from tracklab_sysmon.errors import Unavailable
try:
    print(RaplCollector(sys.argv[1]).collect(0.0))
except Unavailable as exc:
    print("unavailable:", exc)
"""


def without_read_access(files: list[pathlib.Path], argv: list[str]) -> list[str]:
    """argv run so that `files` cannot be read: as root, without the capability to read others' 0400 files."""
    for path in files:
        if os.geteuid() == 0:
            os.chown(path, 65534, 65534)
            path.chmod(0o400)
        else:
            path.chmod(0o000)
    if os.geteuid() == 0:
        return [require_command("setpriv"), "--bounding-set=-dac_override,-dac_read_search", *argv]
    return argv


def test_root_only_counters_make_the_collector_unavailable_saying_so(tmp_path):
    """Every energy_uj readable by root only (Linux 5.10+): unavailable, naming the cause and the fix."""
    sys_root = rapl_tree(tmp_path)
    files = sorted((sys_root / "class/powercap").glob("intel-rapl:*/energy_uj"))
    argv = without_read_access(files, [sys.executable, "-c", PRINT_OUTCOME, str(sys_root)])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == f"unavailable: {ROOT_ONLY}"


async def test_failing_mid_run_is_only_this_collector_and_it_recovers(tmp_path):
    """Zones that vanish (driver unloaded) make rapl `error` with the errno; the others stay ok; back, it is ok."""
    from tracklab_sysmon.collectors.intel import IntelCollector

    sys_root = rapl_tree(tmp_path)
    shutil.copytree(FIXTURES / "intel-xe/sys", sys_root, dirs_exist_ok=True)
    sampler = Sampler([RaplCollector(str(sys_root)), IntelCollector(str(sys_root), str(tmp_path / "proc"))],
                      node_id="n")
    await sampler.tick()
    powercap = sys_root / "class/powercap"
    powercap.rename(tmp_path / "unloaded")
    snapshot = await sampler.tick()
    assert sampler.status["rapl"].state == "error" and sampler.status["rapl"].last_error.startswith("ENOENT")
    assert sampler.status["intel"].state == "ok"
    assert snapshot.energy is not None and snapshot.energy.cpu == () and len(snapshot.energy.gpus) == 1
    (tmp_path / "unloaded").rename(powercap)
    snapshot = await sampler.tick()
    assert sampler.status["rapl"].state == "ok" and len(snapshot.energy.cpu) == 6


# ---------------------------------------------------------------- parsers


@given(st.integers(0, 2**40), st.lists(st.integers(0, 2**30), max_size=30), st.integers(2**31, 2**38))
def test_unwrapping_recovers_every_increment(start, steps, max_range):
    """Readings of a counter wrapping at max_range, each step below the range, unwrap to start + their sum."""
    start %= max_range
    raw, total = start, start
    for step in steps:
        step %= max_range
        reading = (raw + step) % max_range
        assert unwrap(raw, reading, max_range) == step
        raw, total = reading, total + step
    assert total == start + sum(s % max_range for s in steps)


@given(st.integers(-(2**70), 2**70), st.integers(-(2**70), 2**70), st.none() | st.integers(0, 2**64))
def test_unwrap_is_none_or_a_non_negative_step(previous, current, max_range):
    """Any pair of readings gives a step of at least 0 or None, never a negative or a spike beyond the range."""
    step = unwrap(previous, current, max_range)
    assert step is None or step >= 0
    if step is not None and max_range is not None:
        assert step <= max_range


@given(st.text(max_size=60))
def test_zone_names_never_raise(name):
    """Any `name` text gives a known domain (or `other`) and a package number only for package-N."""
    domain, package = zone_domain(name)
    assert domain in ("package", "core", "uncore", "dram", "psys", "other")
    assert (package is not None) == (domain == "package")


def test_zone_names_of_the_kernel():
    """package-N (and multi-die package-N-die-M), core, uncore, dram, psys as intel_rapl_common names them."""
    assert [zone_domain(n) for n in ("package-0", "package-1-die-1\n", "dram", "psys", "gpu")] == [
        ("package", 0), ("package", 1), ("dram", None), ("psys", None), ("other", None)]


def test_unreadable_output_is_json_free():
    """The collector's reason text is one line (it lands in /api/health as JSON)."""
    assert "\n" not in ROOT_ONLY and json.loads(json.dumps(ROOT_ONLY)) == ROOT_ONLY
