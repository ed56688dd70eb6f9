"""TRACKLAB_SYSMON_NATIVE picks the backend, `BACKEND` names it, and `info` shows it."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tracklab_sysmon import hotpath
from tracklab_sysmon._hotpath_py import PyHotReader

TREE = pathlib.Path(__file__).parent / "fixtures" / "vm-capture"


def _c_built() -> bool:
    """Whether the extension imports; under TRACKLAB_SYSMON_NATIVE=require its absence fails the test instead."""
    try:
        import tracklab_sysmon._sysmon_cffi  # noqa: F401
    except ImportError as exc:
        if os.environ.get(hotpath.ENV_VAR, "").strip().lower() == "require":
            pytest.fail(f"{hotpath.ENV_VAR}=require but the C helper does not import: {exc}")
        return False
    return True


def test_off_always_gives_the_python_twin():
    """`off` selects the pure-Python reader whatever was built."""
    assert hotpath.select_backend("off") == (PyHotReader, "python")


def test_auto_prefers_the_c_helper_when_built():
    """`auto` (and an empty value) picks cffi when the extension imports, else python."""
    expected = "cffi" if _c_built() else "python"
    assert hotpath.select_backend("auto")[1] == expected
    assert hotpath.select_backend("  ")[1] == expected


def test_require_gives_cffi_or_a_clear_import_error():
    """`require` never falls back: the C reader, or BackendUnavailable (an ImportError) saying why."""
    if _c_built():
        assert hotpath.select_backend("REQUIRE")[1] == "cffi"
    else:
        with pytest.raises(ImportError, match="C helper is not built"):
            hotpath.select_backend("require")


def test_unknown_mode_is_rejected_with_the_valid_values():
    """A typo in the variable is an error naming the allowed values, not a silent default."""
    with pytest.raises(hotpath.BackendUnavailable, match="must be one of auto, require, off; got 'yes'"):
        hotpath.select_backend("yes")


def test_open_reader_uses_the_exported_backend(tmp_path):
    """open_reader returns an instance of the class named by BACKEND, rooted where asked."""
    reader = hotpath.open_reader(str(tmp_path))
    assert type(reader) is hotpath.HotReader and reader.proc_root == str(tmp_path)
    assert (hotpath.BACKEND == "python") == (type(reader) is PyHotReader)


@pytest.mark.parametrize("mode", ["off", "require"])
def test_info_command_reports_the_backend_chosen_by_the_variable(mode):
    """`tracklab-sysmon info` run with the variable set reports that backend in its JSON."""
    if mode == "require" and not _c_built():
        pytest.skip("the C helper is not built here")
    result = subprocess.run(
        [sys.executable, "-m", "tracklab_sysmon", "info", "--proc-root", str(TREE / "proc"),
         "--sys-root", str(TREE / "sys")],
        env={**os.environ, hotpath.ENV_VAR: mode}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backend"] == {"off": "python", "require": "cffi"}[mode]


def test_invalid_variable_stops_the_cli_with_the_reason():
    """A bad TRACKLAB_SYSMON_NATIVE makes the CLI exit non-zero and say what is wrong."""
    result = subprocess.run([sys.executable, "-m", "tracklab_sysmon", "info"],
                            env={**os.environ, hotpath.ENV_VAR: "maybe"}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and "TRACKLAB_SYSMON_NATIVE must be one of" in result.stderr
