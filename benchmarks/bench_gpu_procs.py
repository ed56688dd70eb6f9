"""Cost of one GpuProcessReader.gpu_usage_by_pid() call on a generated /proc of many processes and fds.

Builds PROCESSES x FDS fdinfo files in a temporary tree (DRM_PROCESSES of them hold one amdgpu client,
the rest are regular files) and times calls in two layouts: with `fd/N` links (a live /proc: the
reader readlinks each fd and reads only DRM fdinfo) and without (a captured tree: every fdinfo is read
and parsed), each for a call that walks every fd (once per FD_WALK_SECONDS) and a call between walks
(only the DRM fds the last walk found are read). Prints the median CPU and wall time per call over
rounds, and the spread.
Usage: bench_gpu_procs.py [--processes 1000] [--fds 10] [--drm-processes 50] [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from tracklab_sysmon.collectors.gpu_procs import GpuProcessReader

REGULAR = "pos:\t0\nflags:\t0100002\nmnt_id:\t25\nino:\t{ino}\n"
AMDGPU = ("pos:\t0\nflags:\t02100002\nmnt_id:\t24\nino:\t{ino}\ndrm-driver:\tamdgpu\ndrm-client-id:\t{client}\n"
          "drm-pdev:\t0000:03:00.0\ndrm-memory-vram:\t262144 KiB\ndrm-memory-gtt: \t2048 KiB\n"
          "drm-memory-cpu: \t0 KiB\ndrm-engine-gfx:\t{busy} ns\ndrm-engine-compute:\t0 ns\n")


def build_tree(root: str, processes: int, fds: int, drm_processes: int, links: bool) -> None:
    card = os.path.join(root, "sys/class/drm/card0/device")
    os.makedirs(card)
    with open(os.path.join(card, "uevent"), "w") as f:
        f.write("DRIVER=amdgpu\nPCI_SLOT_NAME=0000:03:00.0\n")
    for p in range(processes):
        pid = str(1000 + p)
        info = os.path.join(root, "proc", pid, "fdinfo")
        os.makedirs(info)
        if links:
            os.makedirs(os.path.join(root, "proc", pid, "fd"))
        for fd in range(fds):
            drm = p < drm_processes and fd == fds - 1
            text = AMDGPU.format(ino=fd, client=p, busy=p * 1000) if drm else REGULAR.format(ino=fd)
            with open(os.path.join(info, str(fd)), "w") as f:
                f.write(text)
            if links:
                target = "/dev/dri/renderD128" if drm else f"socket:[{p * fds + fd}]"
                os.symlink(target, os.path.join(root, "proc", pid, "fd", str(fd)))


def time_calls(root: str, rounds: int, walk: bool) -> tuple[list[float], list[float], int]:
    clock = iter(range(1, 10**6))  # one second per call: calls between walks unless each call walks
    reader = GpuProcessReader(os.path.join(root, "proc"), os.path.join(root, "sys"), nvidia=False,
                              clock=lambda: float(next(clock)), fd_walk_seconds=0.0 if walk else 1e9)
    reader.gpu_usage_by_pid()  # card discovery, the first walk and first engine times
    cpu, wall, found = [], [], 0
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        found = len(reader.gpu_usage_by_pid())
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return cpu, wall, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--fds", type=int, default=10)
    parser.add_argument("--drm-processes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(f"{args.processes} processes x {args.fds} fds, {args.drm_processes} with an amdgpu client; "
          f"median of {args.rounds} calls")
    print(f"{'layout, call':<44}{'CPU ms':>10}{'wall ms':>10}{'spread ms':>11}{'pids':>6}")
    for links, label in ((True, "fd links (live /proc)"), (False, "fdinfo only (captured tree)")):
        with tempfile.TemporaryDirectory() as root:
            build_tree(root, args.processes, args.fds, args.drm_processes, links)
            for walk in (True, False):
                cpu, wall, found = time_calls(root, args.rounds, walk)
                spread = (max(wall) - min(wall)) * 1e3
                name = f"{label}, {'walk' if walk else 'between walks'}"
                print(f"{name:<44}{statistics.median(cpu) * 1e3:>10.2f}{statistics.median(wall) * 1e3:>10.2f}"
                      f"{spread:>11.2f}{found:>6}")


if __name__ == "__main__":
    main()
