"""The C helper's build: its C tests under ASan/UBSan, and an install without a C compiler."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest
from conftest import require_command

ROOT = pathlib.Path(__file__).resolve().parent.parent
SANITIZE = ["-std=gnu11", "-g", "-O1", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all"]


@pytest.mark.parametrize("part", ["sysmon", "procwalk", "fabric", "fdinfo"])
def test_c_tests_pass_under_address_and_undefined_sanitizers(tmp_path, part):
    """native/test_sysmon.c (the counters and device rates) and native/test_procwalk.c (the process walk) check
    every fixture tree's values and fuzz every parser, native/test_fabric.c the NVLink decoding and rates,
    native/test_fdinfo.c the DRM fdinfo parser on every fixture fdinfo file, with no sanitizer report."""
    cc = require_command(os.environ.get("CC", "cc"))
    binary = tmp_path / f"test_{part}"
    sources = [str(ROOT / f"native/{part}.c")] + ([str(ROOT / "native/devices.c")] if part == "sysmon" else [])
    subprocess.run([cc, *SANITIZE, "-Wall", "-Wextra", "-I", str(ROOT / "native"),
                    *sources, str(ROOT / f"native/test_{part}.c"), "-lm", "-o", str(binary)],
                   check=True)
    if part == "fdinfo":
        inputs = sorted(str(p) for p in (ROOT / "tests/fixtures").glob("*/proc/*/fdinfo/*"))
    else:
        inputs = [*sorted(str(p) for p in (ROOT / "tests/fixtures").glob("*/proc")), "/proc"]
    result = subprocess.run([str(binary), *inputs], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith(" 0 failed") and "ERROR: AddressSanitizer" not in result.stderr


def _clean_copy(destination: pathlib.Path) -> pathlib.Path:
    """The sources a fresh clone has (no built extension, caches or build folder), so pip builds there, not here."""
    for name in ("pyproject.toml", "setup.py", "README.md", "MANIFEST.in"):
        shutil.copy2(ROOT / name, destination / name)
    ignore = shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info", "build")
    for folder in ("src", "native"):
        shutil.copytree(ROOT / folder, destination / folder, ignore=ignore)
    return destination


def test_wheel_builds_without_a_c_compiler_and_falls_back_to_python(tmp_path):
    """With CC=false the wheel still builds (optional extension) and imports with the Python backend."""
    env = {**os.environ, "CC": "false"}
    (tmp_path / "tree").mkdir()
    tree = _clean_copy(tmp_path / "tree")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(tree), "-w", str(tmp_path)],
                   check=True, env=env, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "tracklab_sysmon/hotpath.py" in names and not any(n.endswith(".so") for n in names)
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(wheel).extractall(unpacked)
    # -S keeps the editable install's path hooks away; the venv's packages still supply the deps.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(unpacked), sysconfig.get_paths()["purelib"],
                                                        sysconfig.get_paths()["platlib"]])}
    probe = "import tracklab_sysmon.hotpath as h; print(h.__file__, h.BACKEND)"
    auto = subprocess.run([sys.executable, "-S", "-c", probe], env={**env, "TRACKLAB_SYSMON_NATIVE": "auto"},
                          capture_output=True, text=True, check=True)
    assert auto.stdout.split() == [str(unpacked / "tracklab_sysmon/hotpath.py"), "python"]
    required = subprocess.run([sys.executable, "-S", "-c", probe],
                              env={**env, "TRACKLAB_SYSMON_NATIVE": "require"}, capture_output=True, text=True)
    assert required.returncode != 0 and "C helper is not built" in required.stderr


def test_sdist_carries_what_its_tests_need(tmp_path):
    """The sdist holds the suite with its fixtures and NVML stand-in, the examples, scripts and Makefile it runs."""
    (tmp_path / "tree").mkdir()
    tree = _clean_copy(tmp_path / "tree")
    for folder in ("tests", "examples", "scripts", "benchmarks", "docs"):
        # symlinks kept as links: fixture trees hold dangling ones on purpose (/proc/PID/ns/pid)
        ignore = shutil.ignore_patterns("__pycache__", "*.so")
        shutil.copytree(ROOT / folder, tree / folder, symlinks=True, ignore=ignore)
    for name in ("Makefile", "LICENSE", "CHANGELOG.md", "CONTRIBUTING.md"):
        shutil.copy2(ROOT / name, tree / name)
    code = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "dist")], cwd=tree, check=True,
                   capture_output=True, timeout=300)
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    wanted = {"Makefile", "LICENSE", "tests/conftest.py", "tests/nvml_stub/nvml_stub.c",
              "tests/fixtures/workstation/proc/stat", "examples", "scripts/import_graph.py",
              "native/sysmon.c", "src/tracklab_sysmon/_sysmon_cffi.pyi", "src/tracklab_sysmon/dashboard/index.html",
              "src/tracklab_sysmon/_tpu_proto/tpu_metric_service.proto",
              "src/tracklab_sysmon/_tpu_proto/tpu_metric_service_pb2.pyi", "tests/fixtures/hl-smi/hl-smi"}
    assert sorted(wanted - names) == []
    assert not [n for n in names if n.endswith((".so", ".pyc"))]
