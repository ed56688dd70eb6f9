"""`scripts/gpu-check.sh intel|rapl` end to end on fixture trees, beside stand-in intel_gpu_top and perf executables."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

from conftest import FIXTURES
from hypothesis import given
from hypothesis import strategies as st

SCRIPT = str(pathlib.Path(__file__).parent.parent / "scripts" / "gpu-check.sh")
ENGINES = '"Render/3D/0": {"busy": 0.0, "sema": 0.0, "wait": 0.0, "unit": "%"}, "Blitter/0": {"busy": 0.0}, ' \
          '"Video/0": {"busy": 0.0}, "Video/1": {"busy": 0.0}, "VideoEnhance/0": {"busy": 0.0}'
# intel_gpu_top -J (igt-gpu-tools 1.28) streams one object per period into a JSON array; it runs until stopped.
SAMPLE = ('{{"period": {{"duration": 1000.2, "unit": "ms"}}, "frequency": {{"requested": 2850.0, '
          '"actual": 2850.0, "unit": "MHz"}}, "rc6": {{"value": 99.0, "unit": "%"}}, '
          '"power": {{"GPU": 0.0, "Package": 9.5, "unit": "W"}}, "engines": {{{engines}}}}}')


def _bin(folder: pathlib.Path, name: str, body: str) -> pathlib.Path:
    """A PATH folder with the tools the script uses and one stand-in."""
    folder.mkdir(exist_ok=True)
    for tool in ("dirname", "head", "sleep"):
        if not (folder / tool).exists():
            (folder / tool).symlink_to(shutil.which(tool))
    script = folder / name
    script.write_text(body)
    script.chmod(0o755)
    return folder


def _run(bin_dir: pathlib.Path, mode: str, sys_root: pathlib.Path, proc_root: pathlib.Path | None = None):
    env = {**os.environ, "PYTHON": sys.executable, "PATH": str(bin_dir), "SYSMON_SYS_ROOT": str(sys_root),
           "SYSMON_PROC_ROOT": str(proc_root or sys_root)}
    return subprocess.run([shutil.which("bash"), SCRIPT, mode, "2"], env=env, capture_output=True, text=True,
                          timeout=120)


def _top(tmp_path: pathlib.Path, engines: str) -> pathlib.Path:
    sample = SAMPLE.format(engines=engines)
    body = f"#!/bin/sh\necho '[\n{sample},\n{sample},\n{sample},'\nexec sleep 60\n"
    return _bin(tmp_path / "bin", "intel_gpu_top", body)


def test_intel_check_agrees_with_intel_gpu_top_and_leaves_a_sleeping_card_alone(tmp_path):
    """Same engine classes and readings: exit 0, a table for the awake xe card; the suspended one is not compared."""
    tree = FIXTURES / "intel-xe"
    done = _run(_top(tmp_path, ENGINES + ', "Compute/0": {"busy": 0.0}'), "intel", tree / "sys", tree / "proc")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| engine classes | ['compute', 'copy', 'render', 'video', 'videoEnhance'] |" in done.stdout
    assert "| frequency.actual MHz | 2850.0 | 2850.0 | yes |" in done.stdout
    assert done.stdout.count("intel_gpu_top: 2") == 1  # card0 only (three samples, the first dropped)
    assert "0 stable field(s) disagree" in done.stdout


def test_intel_check_fails_when_the_engine_classes_differ(tmp_path):
    """intel_gpu_top without a compute engine where the card lists one: a stable disagreement, exit 1."""
    tree = FIXTURES / "intel-xe"
    done = _run(_top(tmp_path, ENGINES), "intel", tree / "sys", tree / "proc")
    assert done.returncode == 1 and "| engine classes |" in done.stdout and "**NO**" in done.stdout


def test_intel_check_without_a_card_exits_2(tmp_path):
    """No i915/xe card: exit 2 with the collector's reason."""
    (tmp_path / "sys").mkdir()
    done = _run(_bin(tmp_path / "bin", "true", "#!/bin/sh\n"), "intel", tmp_path / "sys")
    assert done.returncode == 2 and "no i915 or xe device under" in done.stderr


PERF = """#!/bin/sh
# perf stat -a -x, -e power/energy-pkg/,power/energy-ram/ sleep S: the counters move while it counts.
zones="$SYSMON_SYS_ROOT/class/powercap"
echo 2671150 > "$zones/intel-rapl:0/energy_uj"          # +3 J across the wrap
echo 120001000000 > "$zones/intel-rapl:1/energy_uj"     # +1 J
echo 3000500000 > "$zones/intel-rapl:0:1/energy_uj"     # +0.5 J
echo 2500500000 > "$zones/intel-rapl:1:1/energy_uj"     # +0.5 J
echo "{pkg},Joules,power/energy-pkg/,2001234567,100.00,," >&2
echo "1.00,Joules,power/energy-ram/,2001234567,100.00,," >&2
"""


def _rapl_tree(tmp_path: pathlib.Path) -> pathlib.Path:
    shutil.copytree(FIXTURES / "rapl", tmp_path / "rapl")
    return tmp_path / "rapl" / "sys"


def test_rapl_check_agrees_with_perf_across_a_wrap(tmp_path):
    """perf's 4 J package and 1 J DRAM equal the collector's sums over the same interval (a wrap undone): exit 0."""
    done = _run(_bin(tmp_path / "bin", "perf", PERF.format(pkg="4.00")), "rapl", _rapl_tree(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| package | 4.0 |" in done.stdout and "| 4.0 | yes |" in done.stdout
    assert "| dram | 1.0 |" in done.stdout and "0 domain(s) disagree" in done.stdout


def test_rapl_check_fails_when_perf_counts_otherwise(tmp_path):
    """A package figure 5 J off is a disagreement: exit 1."""
    done = _run(_bin(tmp_path / "bin", "perf", PERF.format(pkg="9.00")), "rapl", _rapl_tree(tmp_path))
    assert done.returncode == 1 and "**NO**" in done.stdout


def test_rapl_check_without_zones_exits_2(tmp_path):
    """No powercap zone: exit 2 with the collector's reason."""
    (tmp_path / "sys").mkdir()
    done = _run(_bin(tmp_path / "bin", "true", "#!/bin/sh\n"), "rapl", tmp_path / "sys")
    assert done.returncode == 2 and "no RAPL zone under" in done.stderr


def _script(name: str):
    """A scripts/ module, imported from its file (scripts/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, pathlib.Path(SCRIPT).parent / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHECK_INTEL, CHECK_RAPL = _script("check_intel"), _script("check_rapl")


@given(st.text(max_size=300))
def test_the_checks_parsers_never_raise(text):
    """intel_gpu_top's stream and perf's CSV: any text (a stopped or failing tool) gives objects or figures."""
    assert all(isinstance(o, dict) for o in CHECK_INTEL.json_objects(text))
    assert all(isinstance(v, float) for v in CHECK_RAPL.perf_joules(text).values())


def test_an_unterminated_intel_gpu_top_stream_gives_its_whole_samples():
    """The stream stopped mid-object keeps the complete samples before it; perf's `<not counted>` is skipped."""
    stream = '[\n{"engines": {"Video/0": {"busy": 10.0}, "Video/1": {"busy": 30.0}}},\n{"engines": {"Vid'
    (sample,) = CHECK_INTEL.json_objects(stream)
    assert CHECK_INTEL.top_classes(sample) == {"video": 20.0}  # the class share is the mean of its engines
    perf = "<not counted>,Joules,power/energy-ram/,0,0.00,,\n3.50,Joules,power/energy-pkg/,1,100.00,,\n"
    assert CHECK_RAPL.perf_joules(perf) == {"package": 3.5}

