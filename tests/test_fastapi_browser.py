"""The seed's JavaScript snippet in a real headless Chromium against the FastAPI relay (uvicorn, port 0)."""

from __future__ import annotations

import fastapi
import fastapi.responses
import pytest
import pytest_asyncio
from conftest import require_command
from seed_page import CHROMIUM_ARGS, console_lines, metrics_lines, seed_page
from test_fastapi import _relay_app, serve

from tracklab_sysmon.monitor import SystemMonitor

WAIT_S = 10.0  # upper bound on waiting for console lines; never a speed assertion
pytestmark = pytest.mark.asyncio(loop_scope="module")  # one browser shared by the tests


@pytest.fixture(scope="module")
def service():
    with SystemMonitor(rest_port=0, interval=0.2) as mon:
        yield mon


def _page_app(app=None, ws_port: dict | None = None):
    """Serve the seed's snippet at `/`, aimed at `ws_port["port"]` or else at this app's own port."""
    app = app or fastapi.FastAPI()

    @app.get("/", response_class=fastapi.responses.HTMLResponse)
    async def page(request: fastapi.Request) -> str:
        port = ws_port["port"] if ws_port else request.url.port
        return seed_page(port)

    return app


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    """One headless Chromium (the Debian binary, driven by Playwright) for the module's tests."""
    executable = require_command("chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()


async def _console(browser, page_url: str, wanted) -> list[str]:
    """Open `page_url` (a real loopback server) in a fresh context; collect console lines until `wanted`."""
    context = await browser.new_context()
    try:
        return await console_lines(await context.new_page(), page_url, wanted, WAIT_S)
    finally:
        await context.close()


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


async def test_seed_javascript_logs_metrics_through_the_relay(service, browser):
    """A page served by the FastAPI app runs the seed's snippet and logs CPU and Memory lines from the relay."""
    async with serve(_page_app(_relay_app(service.url))) as base:
        lines = await _console(browser, f"http://localhost:{_port(base)}/", lambda seen: len(metrics_lines(seen)) >= 4)
    metrics = metrics_lines(lines)
    assert [name for name, _ in metrics[:4]] == ["CPU", "Memory", "CPU", "Memory"]
    assert all(0.0 <= value <= 100.0 for _, value in metrics)
    assert any(name == "Memory" and value > 0 for name, value in metrics)


@pytest.mark.parametrize("allowed", [False, True], ids=["refused", "allowed"])
async def test_seed_javascript_on_another_origin(service, browser, allowed):
    """A page from another (loopback) origin is refused by the relay unless that origin is in allow_origins."""
    target: dict = {}
    async with serve(_page_app(ws_port=target)) as page_base:
        page_origin = f"http://localhost:{_port(page_base)}"
        relay = _relay_app(service.url, allow_origins=[page_origin] if allowed else [])
        async with serve(relay) as relay_base:
            target["port"] = _port(relay_base)
            lines = await _console(
                browser, page_origin + "/",
                lambda seen: len(metrics_lines(seen)) >= 2 or any(line.startswith("closed") for line in seen),
            )
    if allowed:
        assert [name for name, _ in metrics_lines(lines)[:2]] == ["CPU", "Memory"]
    else:  # 1006 is the browser's code for a refused handshake
        assert "closed 1006" in lines and not metrics_lines(lines)
        assert not any("LOCAL_NETWORK_ACCESS" in line for line in lines)  # refused by the relay, not Chromium
