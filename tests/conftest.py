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
