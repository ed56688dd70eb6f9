"""scripts/gpu-check.sh end to end on the NVML stand-in, with a stand-in nvidia-smi printing known CSV."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest
from conftest import require_command
from nvml_stub.build import build_stub, stub_env

SCRIPT = str(pathlib.Path(__file__).parent.parent / "scripts" / "gpu-check.sh")
ROW = ("{i}, NVIDIA Stub A100-SXM4-40GB, GPU-00000000-0000-0000-0000-00000000000{i}, 00000000:1{i}:00.0, 1{i}, 5, "
       "{used}, 40960, 4{i}, 10{i}.00, 400.00, 3{i}, 1410, 1215, P{p}, Disabled, {i}, 0")


@pytest.fixture(scope="module")
def stub(tmp_path_factory) -> pathlib.Path:
    require_command("cc")  # make test installs gcc (SYSTEM_DEPS); under CI its absence fails
    return build_stub(tmp_path_factory.mktemp("nvml"))


def _tools(folder: pathlib.Path) -> pathlib.Path:
    """A PATH folder with only the tools the script uses, so a real nvidia-smi elsewhere is never found."""
    folder.mkdir()
    for tool in ("dirname", "head"):
        (folder / tool).symlink_to(shutil.which(tool))
    return folder


def _fake_smi(folder: pathlib.Path, rows: list[str]) -> pathlib.Path:
    _tools(folder)
    script = folder / "nvidia-smi"
    body = "\n".join(f"  echo '{r}'" for r in rows)
    script.write_text(f"#!/bin/sh\ncase \"$*\" in\n *driver_version*) echo 550.54.15 ;;\n *)\n{body}\n ;;\nesac\n")
    script.chmod(0o755)
    return folder


def _run(stub: pathlib.Path, bin_dir: pathlib.Path, **scenario: str) -> subprocess.CompletedProcess:
    env = stub_env(stub, **scenario)
    env["PYTHON"] = sys.executable
    env["PATH"] = str(bin_dir)
    bash = shutil.which("bash")
    return subprocess.run([bash, SCRIPT, "20"], env=env, capture_output=True, text=True, timeout=120)


def test_agreeing_fields_pass_and_print_a_markdown_table(stub, tmp_path):
    """When nvidia-smi agrees with the collector the check exits 0 with a row per field and the tick cost."""
    rows = [ROW.format(i=i, used=1024 * (i + 1), p=i * 8) for i in range(2)]
    done = _run(stub, _fake_smi(tmp_path / "bin", rows), gpus="2")
    assert done.returncode == 0, done.stderr
    assert "| 1 | uuid | GPU-00000000-0000-0000-0000-000000000001 |" in done.stdout
    assert "Cost per tick over 20 ticks (ms): profiling off median" in done.stdout
    assert "0 stable field(s) disagree" in done.stdout


def test_a_stable_field_that_disagrees_fails_the_check(stub, tmp_path):
    """A mismatching identity field (here memory.total) is flagged and makes the check exit 1."""
    rows = [ROW.format(i=0, used=1024, p=0).replace("40960", "81920")]
    done = _run(stub, _fake_smi(tmp_path / "bin", rows), gpus="1")
    assert done.returncode == 1
    assert "| 0 | memory.total MiB | 40960.0 | 81920.0 | **NO** |" in done.stdout


def test_volatile_drift_is_reported_but_does_not_fail(stub, tmp_path):
    """A utilisation reading that moved between the two reads is shown as volatile, not a failure."""
    rows = [ROW.format(i=0, used=1024, p=0).replace(", 10, 5,", ", 90, 5,")]
    done = _run(stub, _fake_smi(tmp_path / "bin", rows), gpus="1")
    assert done.returncode == 0, done.stdout
    assert "| 0 | utilization % | 10.0 | 90.0 | no (volatile) |" in done.stdout


def test_without_nvidia_smi_the_check_says_so_and_exits_2(stub, tmp_path):
    """On a machine without nvidia-smi the check prints one reason and exits 2."""
    done = _run(stub, _tools(tmp_path / "bin"))
    assert done.returncode == 2 and "nvidia-smi not found" in done.stderr
