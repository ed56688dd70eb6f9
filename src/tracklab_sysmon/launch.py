"""The command line's entry points: a service handed over across exec starts here without loading click."""

from __future__ import annotations

import os

from .config import HANDOFF_VAR


def main(prog_name: str | None = None) -> None:
    """`tracklab-sysmon` and `python -m tracklab_sysmon`."""
    if not _run_handed_over():
        from . import cli

        cli.allow_hand_over()
        cli.main(prog_name=prog_name)


def system_monitor() -> None:
    """The seed's `system_monitor` command."""
    if not _run_handed_over():
        from . import cli

        cli.allow_hand_over()
        cli.system_monitor()


def _run_handed_over() -> bool:
    fd_text = os.environ.pop(HANDOFF_VAR, None)  # popped: the tools the service starts must not inherit it
    if fd_text is None:
        return False
    from .service_main import run_handed_over

    run_handed_over(fd_text)
    return True
