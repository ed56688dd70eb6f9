"""The seed's JavaScript WebSocket snippet, unchanged but for its URL, in a real headless Chromium."""

from __future__ import annotations

import pytest
from aiohttp import web
from conftest import require_command
from playwright.async_api import async_playwright
from seed_page import CHROMIUM_ARGS, console_lines, metrics_lines, seed_page

from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.server import create_app

DEADLINE_MS = 8_000  # upper bound on waiting for console lines; never a speed assertion


@pytest.fixture
async def browser_context(tmp_path):
    """A fresh Chromium profile driven through Playwright, with the Debian browser binary."""
    executable = require_command("chromium")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=executable, headless=True, args=CHROMIUM_ARGS,
        )
        try:
            yield context
        finally:
            await context.close()


async def _console_lines(context, page_url: str, wanted) -> list[str]:
    """Open `page_url` in a new page and collect its console lines until `wanted(lines)` holds."""
    page = await context.new_page()
    try:
        return await console_lines(page, page_url, wanted, DEADLINE_MS / 1000)
    finally:
        await page.close()


def _page_app(app: web.Application, service_port) -> web.Application:
    """Serve the page at /seed.html; `service_port(request)` says where its WebSocket goes."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=seed_page(service_port(request)), content_type="text/html")

    app.router.add_get("/seed.html", page)
    return app


async def _service(aiohttp_server, *, serve_page: bool = False, **config):
    """The real service on a free loopback port; optionally also serving the page (a same-origin dashboard)."""
    app = create_app(ServiceConfig(interval=0.2, **config))
    if serve_page:
        _page_app(app, lambda request: request.url.port)
    return await aiohttp_server(app, host="127.0.0.1")


async def _frontend(aiohttp_server, ports: dict):
    """Another web server on loopback, i.e. another origin, serving only the page."""
    return await aiohttp_server(_page_app(web.Application(), lambda request: ports["service"]), host="127.0.0.1")


async def test_seed_snippet_logs_cpu_and_memory_from_the_same_origin(aiohttp_server, browser_context):
    """A page served from the service's own origin runs the snippet and logs CPU and Memory percentages each tick."""
    server = await _service(aiohttp_server, serve_page=True)
    lines = await _console_lines(
        browser_context, f"http://localhost:{server.port}/seed.html",
        lambda seen: len(metrics_lines(seen)) >= 4,
    )
    metrics = metrics_lines(lines)
    assert [name for name, _ in metrics[:4]] == ["CPU", "Memory", "CPU", "Memory"]
    assert all(0.0 <= value <= 100.0 for _, value in metrics)
    assert any(name == "Memory" and value > 0 for name, value in metrics)
    assert not [line for line in lines if line.startswith("closed")]


async def test_seed_snippet_works_from_an_allowed_frontend_origin(aiohttp_server, browser_context):
    """A frontend on another origin named by --allow-origin streams metrics into the snippet."""
    ports: dict[str, int] = {}
    frontend = await _frontend(aiohttp_server, ports)
    server = await _service(aiohttp_server, allow_origins=(f"http://localhost:{frontend.port}",))
    ports["service"] = server.port
    lines = await _console_lines(
        browser_context, f"http://localhost:{frontend.port}/seed.html",
        lambda seen: len(metrics_lines(seen)) >= 2,
    )
    assert [name for name, _ in metrics_lines(lines)[:2]] == ["CPU", "Memory"]


async def test_seed_snippet_gets_nothing_on_a_foreign_site(aiohttp_server, browser_context):
    """A page on a site that is not allowed cannot open the socket, so it never sees a metric."""
    server = await _service(aiohttp_server)
    foreign = await _frontend(aiohttp_server, {"service": server.port})
    lines = await _console_lines(
        browser_context, f"http://localhost:{foreign.port}/seed.html",
        lambda seen: any(line.startswith("closed") for line in seen),
    )
    assert "closed 1006" in lines  # the browser's code for a refused handshake
    assert not metrics_lines(lines)
