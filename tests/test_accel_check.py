"""scripts/gpu-check.sh tpu|neuron|gaudi (scripts/accel-check.sh) end to end on the stand-ins."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from conftest import FIXTURES
from tpu_standin import StandInServer, StandInService

SCRIPT = str(pathlib.Path(__file__).parent.parent / "scripts" / "gpu-check.sh")


def _run(tmp_path: pathlib.Path, vendor: str, path: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHON": sys.executable, "PATH": path, "RAW_OUT": str(tmp_path / "raw"), **env}
    return subprocess.run([shutil.which("bash"), SCRIPT, vendor, "1"], env=environ, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(("vendor", "folder", "row"), [
    ("neuron", "neuron-monitor", "| 3 | inferentia2 | 32.0 | 104857600 | 34359738368 | None | None |"),
    ("gaudi", "hl-smi", "| 2 | HL-225 | 97.0 | 94489280512 | 103079215104 | 420.0 | 51.0 |"),
])
def test_tool_check_prints_devices_keeps_raw_output_and_measures_the_child(tmp_path, vendor, folder, row):
    """With the stand-in on PATH the check lists the devices, saves the tool's raw lines and its idle CPU."""
    done = _run(tmp_path, vendor, f"{FIXTURES / folder}:{os.environ['PATH']}")
    assert done.returncode == 0, done.stderr
    assert row in done.stdout
    assert "% of one core over 1 s; raw output kept in" in done.stdout
    assert "collect() per tick: median" in done.stdout
    first = (tmp_path / "raw").read_text().splitlines()[0]
    assert first == ((FIXTURES / folder / ("reports-inf2.jsonl" if vendor == "neuron" else "rows-gaudi2.csv"))
                     .read_text().splitlines()[0])


def test_tpu_check_reads_the_service_at_the_given_address(tmp_path):
    """TPU_ADDR points the check at a metrics service; its four devices are listed."""
    server = StandInServer(StandInService()).start()
    try:
        done = _run(tmp_path, "tpu", os.environ["PATH"], TPU_ADDR=server.address)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert "| 1 | Google TPU | 12.25 | 3221225472 | 17179869184 | None | None | {} |" in done.stdout


@pytest.mark.parametrize("vendor", ["neuron", "gaudi", "tpu"])
def test_missing_source_exits_2(tmp_path, vendor):
    """No tool on PATH (or no service): exit status 2 with the reason on stderr."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "bash"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    done = _run(tmp_path, vendor, str(bin_dir), TPU_ADDR="127.0.0.1:1")
    assert done.returncode == 2
    assert "accel-check:" in done.stderr
