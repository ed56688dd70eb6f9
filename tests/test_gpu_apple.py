"""Apple / macOS GPUs: the ioreg parser on captured-shape texts and the collector over a real subprocess."""

from __future__ import annotations

import sys

import pytest
from conftest import FIXTURES

from tracklab_sysmon import wire
from tracklab_sysmon.collectors.apple import RECHECK_SECONDS, AppleCollector, parse_ioreg, samples_from_ioreg
from tracklab_sysmon.errors import Unavailable

APPLE = FIXTURES / "apple"
GIB = 2**30


def _text(name: str) -> str:
    return (APPLE / name).read_text()


def test_parser_reads_nested_dictionaries_arrays_data_and_booleans():
    """Every ioreg value form is parsed: dicts, nested arrays, negative numbers, data and Yes/No."""
    (entry,) = parse_ioreg(_text("m1-pro.txt"))
    assert entry["__class__"] == "AGXAcceleratorG13X" and entry["gpu-core-count"] == 16
    assert entry["IOReportLegends"][0]["IOReportChannels"] == [[5, -1, "GPU Performance States"]]
    assert entry["SchedulerState"] == "0200000000000000" and entry["IOMatchedAtBoot"] is True
    assert entry["PerformanceStatistics"]["In use system memory"] == 730284032


def test_apple_silicon_utilisation_and_unified_memory():
    """An M1 Pro reports device utilisation, in-use memory against unified memory, and its core count."""
    (gpu,) = [wire.accelerator_to_wire(a) for a in samples_from_ioreg(_text("m1-pro.txt"), 32 * GIB)]
    assert (gpu["name"], gpu["vendor"], gpu["utilization"]) == ("Apple M1 Pro", "apple", 5.0)
    assert gpu["memory"] == {"used": 730284032, "total": 32 * GIB, "percentage": 2.13}
    assert (gpu["rendererUtilization"], gpu["tilerUtilization"], gpu["coreCount"]) == (4.0, 3.0, 16)
    assert gpu["temperature"] is None and gpu["power"] is None  # not in ioreg without sudo


def test_busy_m3_max():
    """A busy M3 Max is read with its own numbers."""
    (gpu,) = samples_from_ioreg(_text("m3-max.txt"), 64 * GIB)
    assert (gpu.name, gpu.utilization, gpu.memory.used, gpu.memory.percentage) == (
        "Apple M3 Max", 93.0, 16 * GIB, 25.0
    )


def test_intel_mac_with_discrete_radeon_and_integrated_graphics():
    """An Intel Mac lists both GPUs: the Radeon with its own VRAM, temperature, power and fan; Intel without a total."""
    radeon, intel = samples_from_ioreg(_text("intel-radeon.txt"), 16 * GIB)
    assert (radeon.name, radeon.vendor, radeon.utilization) == ("AMD Radeon Pro 5500M", "amd", 17.0)
    assert (radeon.memory.used, radeon.memory.total) == (1234567168, 4 * GIB)
    assert (radeon.temperature, radeon.power, radeon.fan_speed) == (49.0, 21.0, 28.0)
    assert (intel.id, intel.vendor, intel.memory.used, intel.memory.total) == (1, "intel", 268435456, None)


def test_unreadable_property_does_not_lose_the_device():
    """A property the parser cannot read becomes None and the rest of the entry survives."""
    text = '+-o AGXAcceleratorG14G  <class AGXAcceleratorG14G, id 0x1>\n    {\n      "model" = "Apple M2"\n' \
           '      "Broken" = {"unterminated\n      "PerformanceStatistics" = {"Device Utilization %"=41}\n    }\n'
    (gpu,) = samples_from_ioreg(text, None)
    assert gpu.name == "Apple M2" and gpu.utilization == 41.0


def test_collector_runs_the_command_as_a_real_subprocess():
    """On macOS the collector runs its command and turns its output into samples."""
    collector = AppleCollector(command=("cat", str(APPLE / "m3-max.txt")), platform="darwin",
                               memory_total=lambda: 64 * GIB)
    (gpu,) = collector.collect(0.0)
    assert gpu.name == "Apple M3 Max" and gpu.memory.total == 64 * GIB


def test_collector_is_unavailable_off_macos():
    """Anywhere but macOS the collector says ioreg statistics do not exist here."""
    with pytest.raises(Unavailable, match="only on macOS"):
        AppleCollector(platform="linux").collect(0.0)


def test_missing_ioreg_is_unavailable_and_empty_output_too():
    """No ioreg binary, or ioreg listing no accelerator, is "unavailable", not an error."""
    with pytest.raises(Unavailable, match="not found"):
        AppleCollector(command=("no-such-ioreg-here",), platform="darwin").collect(0.0)
    with pytest.raises(Unavailable, match="no IOAccelerator"):
        AppleCollector(command=("true",), platform="darwin", memory_total=lambda: None).collect(0.0)


def test_failing_ioreg_is_an_error_with_its_name():
    """ioreg exiting non-zero is a collector error naming the command (health shows it)."""
    command = (sys.executable, "-c", "raise SystemExit(3)")
    with pytest.raises(RuntimeError, match="failed"):
        AppleCollector(command=command, platform="darwin").collect(0.0)


def test_unavailable_ioreg_is_run_again_only_after_the_recheck_period(tmp_path):
    """With no GPU listed, ioreg runs once per recheck period; ticks in between re-raise the saved reason."""
    calls = tmp_path / "calls"
    collector = AppleCollector(command=("sh", "-c", f"echo run >> '{calls}'"), platform="darwin",
                               memory_total=lambda: None)
    for now in (0.0, 1.0, 2.0, RECHECK_SECONDS - 1):
        with pytest.raises(Unavailable, match="no IOAccelerator"):
            collector.collect(now)
    assert calls.read_text().count("run") == 1
    with pytest.raises(Unavailable, match="no IOAccelerator"):
        collector.collect(RECHECK_SECONDS)
    assert calls.read_text().count("run") == 2


def test_missing_ioreg_is_not_looked_for_every_tick(tmp_path):
    """A missing ioreg binary is looked for again only after the recheck period, with the same reason between."""
    collector = AppleCollector(command=(str(tmp_path / "ioreg"),), platform="darwin", memory_total=lambda: None)
    with pytest.raises(Unavailable, match="not found"):
        collector.collect(0.0)
    script = tmp_path / "ioreg"
    script.write_text(f"#!/bin/sh\ncat '{APPLE / 'm3-max.txt'}'\n")
    script.chmod(0o755)
    with pytest.raises(Unavailable, match="not found"):
        collector.collect(RECHECK_SECONDS / 2)
    (gpu,) = collector.collect(RECHECK_SECONDS)
    assert gpu.name == "Apple M3 Max"
