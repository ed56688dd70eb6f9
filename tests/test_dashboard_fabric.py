"""The dashboard's fabric section in a real headless Chromium: NVLink per GPU, InfiniBand ports, nothing when absent."""

from __future__ import annotations

import shutil

import pytest
from conftest import FIXTURES, require_command
from dashboard_support import launch_chromium, many_cpu_tree, watch_problems
from playwright.async_api import async_playwright

from tracklab_sysmon.collectors import default_collectors
from tracklab_sysmon.collectors.infiniband import InfinibandCollector
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.model import NvlinkLink, NvlinkSample
from tracklab_sysmon.server import create_app

DEADLINE_MS = 20_000  # upper bound on waiting for the page; never a speed assertion
IB_TREE = FIXTURES / "infiniband-hca" / "sys" / "class" / "infiniband"
# Two GPUs' links with fixed rates (bytes/s): GPU 0 both active, GPU 1 one link down whose TX rate is unknown.
LINKS = (
    NvlinkLink(0, "GPU-0", 0, "active", 200e9, 10, 10, 12.5e9, 1.0e9),
    NvlinkLink(0, "GPU-0", 1, "active", 200e9, 10, 10, 12.5e9, 0.5e9),
    NvlinkLink(1, "GPU-1", 0, "active", 200e9, 10, 10, 2.0e6, 3.0e6),
    NvlinkLink(1, "GPU-1", 1, "inactive", None, None, 10, None, 4.0e6),
)
ROWS_JS = "id => Array.from(document.getElementById(id).rows, r => Array.from(r.cells, c => c.textContent))"


class FixedNvlink:
    """A stand-in at the collector interface: the same NVLink section every tick (no NVML here)."""

    name = "nvlink"
    blocking = False

    def __init__(self, links: tuple[NvlinkLink, ...]) -> None:
        self.links = links

    def collect(self, now: float) -> NvlinkSample:
        return NvlinkSample(self.links)


@pytest.fixture
async def browser():
    require_command("chromium")
    async with async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


async def _dashboard(aiohttp_server, browser, tmp_path, extra):
    """The real service on a captured 4-CPU tree plus `extra` collectors, and the page open on it."""
    proc_root, sys_root = many_cpu_tree(tmp_path / "tree", 4)
    collectors = [*default_collectors(str(proc_root), str(sys_root), statvfs=None, host_gpus=False), *extra]
    config = ServiceConfig(proc_root=str(proc_root), sys_root=str(sys_root), interval=0.2)
    server = await aiohttp_server(create_app(config, collectors=collectors), host="127.0.0.1")
    page = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
    problems = watch_problems(page)
    await page.goto(f"http://127.0.0.1:{server.port}/")
    return page, problems


async def _ticks(page, count: int) -> None:
    """Wait until the page has shown `count` more snapshots."""
    for _ in range(count):
        shown = await page.evaluate("() => document.getElementById('node').dataset.timestamp")
        await page.wait_for_function(
            "after => { const ts = document.getElementById('node').dataset.timestamp; return ts && ts !== after; }",
            arg=shown, timeout=DEADLINE_MS)


def _ib_tree(tmp_path):
    root = tmp_path / "ib" / "class" / "infiniband"
    shutil.copytree(IB_TREE, root)
    return str(tmp_path / "ib")


async def test_nvlink_and_infiniband_rates_and_link_state_are_shown(aiohttp_server, browser, tmp_path):
    """NVLink TX/RX summed per GPU (a dash while a link's rate is unknown) and each InfiniBand port's
    layer, state, link rate and data rates (0 B/s: the fixture's counters do not move)."""
    extra = [FixedNvlink(LINKS), InfinibandCollector(_ib_tree(tmp_path))]
    page, problems = await _dashboard(aiohttp_server, browser, tmp_path, extra)
    await page.wait_for_function("() => document.getElementById('ib-rows').rows.length === 3", timeout=DEADLINE_MS)
    await _ticks(page, 2)
    assert await page.locator("#fabric").is_visible()
    assert await page.evaluate(ROWS_JS, "nvlink-rows") == [
        ["#0", "2 / 2", "25.0 GB/s", "1.5 GB/s"],
        ["#1", "1 / 2", "\u2013", "7.0 MB/s"],
    ]
    assert await page.evaluate(ROWS_JS, "ib-rows") == [
        ["mlx5_0/1", "InfiniBand", "active (link up)", "200 Gb/s", "0 B/s", "0 B/s"],
        ["mlx5_1/1", "InfiniBand", "down (disabled)", "10.0 Gb/s", "0 B/s", "0 B/s"],
        ["mlx5_2/1", "Ethernet", "active (link up)", "25.0 Gb/s", "0 B/s", "0 B/s"],
    ]
    assert problems == []


async def test_infiniband_alone_hides_the_nvlink_table(aiohttp_server, browser, tmp_path):
    """With ports but no NVLink collector, the port table shows and the NVLink table is not drawn at all."""
    page, problems = await _dashboard(aiohttp_server, browser, tmp_path, [InfinibandCollector(_ib_tree(tmp_path))])
    await page.wait_for_function("() => document.getElementById('ib-rows').rows.length === 3", timeout=DEADLINE_MS)
    assert await page.locator("#infiniband").is_visible()
    assert not await page.locator("#nvlink").is_visible()
    assert await page.evaluate(ROWS_JS, "nvlink-rows") == []
    assert problems == []


@pytest.mark.parametrize("extra", [[], [FixedNvlink(())]], ids=["no-fabric-section", "empty-nvlink-list"])
async def test_no_fabric_panel_without_links_or_ports(aiohttp_server, browser, tmp_path, extra):
    """No fabric section (no collector) or one with an empty list: no panel, not an empty one."""
    page, problems = await _dashboard(aiohttp_server, browser, tmp_path, extra)
    await _ticks(page, 2)
    assert not await page.locator("#fabric").is_visible()
    assert await page.evaluate(ROWS_JS, "ib-rows") == []
    assert problems == []
