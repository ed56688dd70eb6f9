"""Shared fixtures: paths to the fixture trees and helpers to run real services."""

from __future__ import annotations

import os
import pathlib

import pytest

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def require_command(command: str) -> str:
    """Path of a system command the test drives for real; skip locally, fail under CI, if absent."""
    import shutil

    path = shutil.which(command)
    if path is None:
        message = f"{command} is not installed (make test installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def open_under(root: pathlib.Path) -> list[str]:
    """Paths of this process's descriptors whose file lies under `root`, sorted (kept files, counted)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if target.startswith(f"{root}/"):
            found.append(target)
    return sorted(found)


def native_module():
    """The compiled hot-path wrapper; skip locally, fail under TRACKLAB_SYSMON_NATIVE=require, if absent."""
    from tracklab_sysmon import hotpath

    try:
        hotpath.select_backend("require")
    except hotpath.BackendUnavailable as exc:
        if os.environ.get(hotpath.ENV_VAR, "").strip().lower() == "require":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    from tracklab_sysmon import _hotpath_cffi

    return _hotpath_cffi


def outcome(call) -> tuple:
    """The value, or the exception's type and message, so both backends' errors compare too."""
    try:
        return ("value", call())
    except Exception as exc:
        return ("error", type(exc), str(exc))


# Share of near-valid fuzz cases per parser in which both backends produced equal values
# (filled by tests/test_native_fuzz.py, printed after the run so the number is visible in CI logs).
FUZZ_SHARES = pytest.StashKey[dict[str, tuple[float, dict[str, int]]]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """Print the near-valid fuzz shares, when that test ran."""
    shares = config.stash.get(FUZZ_SHARES, {})
    if shares:
        terminalreporter.section("C/Python fuzz: cases compared by value")
        for kind, (share, seen) in sorted(shares.items()):
            terminalreporter.write_line(f"{kind:16} {share:6.1%}  {seen}")
