"""Browser cost of the dashboard: 256 cores and 8 GPUs streaming into headless Chromium, 60-minute window.

The service runs in a child process on a generated 256-core capture whose /proc/stat moves every
tick, with the NVML stand-in (tests/nvml_stub) answering for 8 GPUs. Chromium opens the page,
chooses the 60-minute window and stays on it for --minutes (default 2) at --interval (default
0.1 s), i.e. ten times the 1 Hz rate: 2 minutes fill the buffer as 20 minutes at 1 Hz would.
Every 10 s it reads Chromium's Performance.getMetrics (JSHeapUsedSize, Nodes, TaskDuration) over
CDP; a PerformanceObserver in the page counts long tasks (> 50 ms). Prints one row per sample and
a summary. `--control` opens the static login page instead: the long tasks a page with no script
work gets on the same machine under the same service load.
Run: .venv/bin/python benchmarks/bench_dashboard.py [--minutes 6] [--interval 0.1] [--control]
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import statistics
import sys
import tempfile
import threading

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

CPUS, GPUS = 256, 8
SAMPLE_SECONDS = 10.0
LONG_TASKS = """
window.dashboardRenderTimes = [];
window.__longTasks = [];
new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longTasks.push(e.duration); })
  .observe({type: 'longtask', buffered: true});
"""


def start_service(tmp: pathlib.Path, interval: float):
    """The service child on a moving 256-core capture with the 8-GPU NVML stand-in; returns (process, url, stop)."""
    from dashboard_support import gpu_service, many_cpu_tree, write_stat

    proc_root, sys_root = many_cpu_tree(tmp / "tree", CPUS)
    stop = threading.Event()

    def advance() -> None:
        tick = 2
        while not stop.wait(interval / 2):
            write_stat(proc_root, CPUS, tick)
            tick += 1

    threading.Thread(target=advance, daemon=True).start()
    child, url = gpu_service(tmp, proc_root, sys_root, interval, GPUS)
    return child, url, stop


async def measure(url: str, minutes: float, control: bool) -> list[dict]:
    from dashboard_support import launch_chromium, watch_problems
    from playwright.async_api import async_playwright

    rows = []
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright)
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        problems = watch_problems(page)
        await page.add_init_script(LONG_TASKS)
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Performance.enable")
        if control:  # the static login page: no script work at all, so its long tasks are the machine's
            await page.goto(url + "/login")
        else:
            await page.goto(url + "/")
            await page.wait_for_function("() => document.getElementById('cores').dataset.cores === '256'",
                                         timeout=60_000)
            await page.click("[data-window='3600']")
        elapsed = 0.0
        while elapsed < minutes * 60:
            await asyncio.sleep(SAMPLE_SECONDS)
            elapsed += SAMPLE_SECONDS
            metrics = {m["name"]: m["value"] for m in (await cdp.send("Performance.getMetrics"))["metrics"]}
            page_state = await page.evaluate(
                "() => ({points: Number(document.getElementById('chart-cpu')?.dataset.points || 0),"
                " gpus: document.getElementById('acc-rows')?.rows.length || 0, longTasks: window.__longTasks.slice(),"
                " renders: window.dashboardRenderTimes.slice()})"
            )
            rows.append({"t": elapsed, "heap": metrics["JSHeapUsedSize"], "nodes": metrics["Nodes"],
                         "task": metrics["TaskDuration"], **page_state})
            print(f"{elapsed:6.0f} s  heap {metrics['JSHeapUsedSize'] / 2**20:7.1f} MiB  "
                  f"samples {page_state['points']:6d}  GPUs {page_state['gpus']}  "
                  f"long tasks {len(page_state['longTasks']):3d}  "
                  f"max {max(page_state['longTasks'], default=0):5.0f} ms  "
                  f"redraw median {statistics.median(page_state['renders'] or [0]):5.1f} ms",
                  flush=True)
        await browser.close()
    if problems:
        print("page problems:", *problems[:5], sep="\n  ")
    return rows


def report(rows: list[dict], minutes: float, interval: float) -> None:
    last = rows[-1]
    tasks = last["longTasks"]
    print(f"\nDashboard in Chromium: {CPUS} cores, {last['gpus']} GPUs, {minutes:g} min at {interval:g} s "
          f"({last['points']} samples in the 60-min buffer = {last['points'] / 60:.0f} min at 1 Hz)")
    print(f"  JS heap used: first {rows[0]['heap'] / 2**20:.1f} MiB, last {last['heap'] / 2**20:.1f} MiB, "
          f"max {max(r['heap'] for r in rows) / 2**20:.1f} MiB")
    print(f"  long tasks (> 50 ms): {len(tasks)}, longest {max(tasks, default=0):.0f} ms; "
          f"main-thread busy {100 * last['task'] / last['t']:.1f} % of the run")
    renders = last["renders"]
    before_last_minute = next((r for r in reversed(rows) if r["t"] <= last["t"] - 60), rows[0])
    print(f"  redraws, all: {_spread(renders)}")
    print(f"  redraws, last minute (full buffer): {_spread(renders[len(before_last_minute['renders']):])}")


def _spread(times: list[float]) -> str:
    if len(times) < 2:
        return f"{len(times)} redraws"
    deciles = statistics.quantiles(times, n=10)
    return (f"{len(times)}, median {statistics.median(times):.1f} ms, p90 {deciles[-1]:.1f} ms, "
            f"max {max(times):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--control", action="store_true", help="open the static login page instead (baseline)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        child, url, stop = start_service(pathlib.Path(tmp), args.interval)
        try:
            rows = asyncio.run(measure(url, args.minutes, args.control))
        finally:
            stop.set()
            child.kill()
            child.wait()
            child.stdout.close()
    report(rows, args.minutes, args.interval)


if __name__ == "__main__":
    main()
