"""What the dashboard and `top` tests and the dashboard benchmark share: many-CPU trees, services, Chromium."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
START_DEADLINE = 20.0  # upper bound on a service writing its portfile; never a speed assertion
# The Debian Chromium, headless, with nothing that reaches beyond this machine (as seed_page.CHROMIUM_ARGS).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]


def core_busy(core: int) -> float:
    """The share of each tick core `core` spends busy in a generated tree: 0 %, 10 %, ... 90 %, repeating."""
    return (core % 10) / 10


def write_stat(proc_root: pathlib.Path, cpus: int, tick: int) -> None:
    """/proc/stat of `cpus` cores after `tick` seconds; every core busy `core_busy(i)` of the time."""
    hz = 100
    rows = [(round(core_busy(i) * hz * tick), hz * tick - round(core_busy(i) * hz * tick)) for i in range(cpus)]
    user, idle = sum(u for u, _ in rows), sum(i for _, i in rows)
    # Fixed-width counters keep the file's size, so one pwrite updates it in place: the service keeps
    # /proc/stat open and re-reads it with pread, so replacing the file would go unseen.
    lines = [f"cpu  {user:014d} 0 0 {idle:014d} 0 0 0 0 0 0"]
    lines += [f"cpu{i} {u:012d} 0 0 {d:012d} 0 0 0 0 0 0" for i, (u, d) in enumerate(rows)]
    text = ("\n".join(lines) + "\nintr 1 2 3\nctxt 1\nbtime 1700000000\nprocesses 10\n").encode()
    fd = os.open(proc_root / "stat", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, text, 0)
    finally:
        os.close(fd)


def many_cpu_tree(dest: pathlib.Path, cpus: int) -> tuple[pathlib.Path, pathlib.Path]:
    """A copy of the workstation capture with `cpus` cores in /proc/stat; returns (proc_root, sys_root)."""
    shutil.copytree(FIXTURES / "workstation", dest)
    write_stat(dest / "proc", cpus, 1)
    return dest / "proc", dest / "sys"


class ServiceProcess:
    """A real `tracklab-sysmon serve` child; `restart()` brings it back on the same port."""

    def __init__(self, tmp: pathlib.Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.tmp, self.args, self.env = tmp, list(args), env
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.start()

    def start(self) -> None:
        portfile = self.tmp / f"port-{time.monotonic_ns()}.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", str(self.port),
             "--portfile", str(portfile), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env,
        )
        end = time.monotonic() + START_DEADLINE
        while not portfile.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode} before serving")
            if time.monotonic() > end:
                raise RuntimeError("the service never wrote its portfile")
            time.sleep(0.05)
        written = json.loads(portfile.read_text())
        self.port, self.url = written["port"], written["url"]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(START_DEADLINE)

    def restart(self) -> None:
        self.kill()
        self.start()


def gpu_service(tmp: pathlib.Path, proc_root: pathlib.Path, sys_root: pathlib.Path, interval: float, gpus: int):
    """The app in a child process whose NVML is the stand-in with `gpus` GPUs; returns (process, base URL).

    The CLI reads GPUs only on the host (not on a captured tree), so the child builds the app itself
    with the NVIDIA collector forced on; the stub is found through LD_LIBRARY_PATH as the real one is.
    """
    from nvml_stub.build import build_stub, stub_env

    env = stub_env(build_stub(tmp / "nvml"), gpus=str(gpus))
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(proc_root), str(sys_root), str(interval)],
        stdout=subprocess.PIPE, env=env, text=True,
    )
    assert child.stdout is not None
    port = int(child.stdout.readline())
    return child, f"http://127.0.0.1:{port}"


async def _serve_with_gpus(proc_root: str, sys_root: str, interval: float) -> None:
    """Child of `gpu_service`: the real app on a free loopback port; prints the port, serves until killed."""
    import asyncio

    from aiohttp import web

    from tracklab_sysmon.collectors import default_collectors
    from tracklab_sysmon.config import ServiceConfig
    from tracklab_sysmon.server import create_app

    config = ServiceConfig(proc_root=proc_root, sys_root=sys_root, interval=interval, node_id="gpu-node")
    collectors = default_collectors(proc_root, sys_root, statvfs=None, host_gpus=True)
    runner = web.AppRunner(create_app(config, collectors=collectors), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


async def launch_chromium(playwright, args: Sequence[str] = ()):
    """The Debian Chromium driven by Playwright (no browser download)."""
    executable = shutil.which("chromium")
    if executable is None:
        raise RuntimeError("chromium is not installed (make test installs it)")
    return await playwright.chromium.launch(executable_path=executable, headless=True, args=[*CHROMIUM_ARGS, *args])


def watch_problems(page) -> list[str]:
    """Console errors, uncaught exceptions and CSP violations of `page`, collected as they happen."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
    return problems


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    import asyncio

    asyncio.run(_serve_with_gpus(sys.argv[2], sys.argv[3], float(sys.argv[4])))
