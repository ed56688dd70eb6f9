"""The dashboard at GET /: headers, vendored uPlot, and the page itself in a real headless Chromium."""

from __future__ import annotations

import asyncio
import hashlib
import json
import pathlib
import re

import aiohttp
import pytest
from conftest import require_command
from dashboard_support import (
    ServiceProcess,
    core_busy,
    gpu_service,
    launch_chromium,
    many_cpu_tree,
    watch_problems,
    write_stat,
)
from playwright.async_api import async_playwright

from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.server import create_app
from tracklab_sysmon.server.security import COOKIE

DEADLINE_MS = 20_000  # upper bound on waiting for the page; never a speed assertion
DASHBOARD = pathlib.Path(__file__).parent.parent / "src/tracklab_sysmon/dashboard"
ARTIFACTS = pathlib.Path(__file__).parent.parent / "out" / "dashboard"
# Reports CSP violations on the console too (Chromium's own "Refused to ..." lines already are errors).
CSP_PROBE = ("document.addEventListener('securitypolicyviolation',"
             " e => console.error('CSP violation ' + e.violatedDirective));")


@pytest.fixture
async def browser():
    require_command("chromium")
    async with async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


async def _service(aiohttp_server, **config):
    return await aiohttp_server(create_app(ServiceConfig(interval=0.2, **config)), host="127.0.0.1")


async def _open(browser, url: str, **context_options):
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, **context_options)
    page = await context.new_page()
    await page.add_init_script(CSP_PROBE)
    problems = watch_problems(page)
    await page.goto(url)
    return page, problems


async def _shown(page) -> dict:
    """The snapshot timestamp the page shows and its CPU text, read together."""
    return await page.evaluate(
        "() => ({ts: document.getElementById('node').dataset.timestamp,"
        " cpu: document.getElementById('cpu-value').textContent,"
        " chart: document.getElementById('chart-cpu').dataset.last})"
    )


async def _next_tick(page, after: str | None) -> dict:
    await page.wait_for_function(
        "after => { const ts = document.getElementById('node').dataset.timestamp; return ts && ts !== after; }",
        arg=after, timeout=DEADLINE_MS,
    )
    return await _shown(page)


# ---- headers and files, no browser -------------------------------------------------------------


async def test_page_and_static_files_carry_csp_nosniff_and_cache_headers(aiohttp_server):
    """/ is no-cache with a strict CSP; static files get max-age and an ETag that answers 304."""
    server = await _service(aiohttp_server)
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/")) as page:
            assert page.status == 200 and page.content_type == "text/html"
            csp = page.headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp and "connect-src 'self'" in csp and "script-src 'self';" in csp
            assert "unsafe-inline" not in csp
            assert page.headers["X-Content-Type-Options"] == "nosniff"
            assert page.headers["Cache-Control"] == "no-cache"
        async with session.get(server.make_url("/static/app.js")) as script:
            assert script.status == 200 and script.content_type == "text/javascript"
            assert script.headers["Cache-Control"] == "public, max-age=3600"
            assert script.headers["X-Content-Type-Options"] == "nosniff"
            etag = script.headers["ETag"]
            assert await script.read() == (DASHBOARD / "app.js").read_bytes()
        async with session.get(server.make_url("/static/app.js"), headers={"If-None-Match": etag}) as again:
            assert again.status == 304
        async with session.get(server.make_url("/static/nothing.js")) as missing:
            assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
        async with session.get(server.make_url("/static/index.html")) as page_as_static:
            assert page_as_static.status == 404


def test_the_page_has_no_inline_script_or_style():
    """Every script and style of the pages is a file of its own, so the CSP needs no 'unsafe-inline'."""
    for name in ("index.html", "login.html"):
        html = (DASHBOARD / name).read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), name
        assert "<style" not in html and " style=" not in html, name
        assert not re.search(r"\son[a-z]+=", html), name


def test_vendored_uplot_matches_its_recorded_version_and_hashes():
    """The vendored uPlot files are byte for byte what VENDORED.json records, and the script says that version."""
    record = json.loads((DASHBOARD / "vendor/VENDORED.json").read_text())
    assert record["package"] == "uplot" and record["license"] == "MIT"
    for name, digest in record["sha256"].items():
        assert hashlib.sha256((DASHBOARD / "vendor" / name).read_bytes()).hexdigest() == digest, name
    assert set(record["sha256"]) == {p.name for p in (DASHBOARD / "vendor").iterdir()} - {"VENDORED.json"}
    head = (DASHBOARD / "vendor/uPlot.iife.min.js").read_text()[:200]
    assert f"(v{record['version']})" in head
    assert "MIT" in (DASHBOARD / "vendor/uPlot.LICENSE").read_text()


def test_the_dashboard_files_are_package_data():
    """pyproject ships the dashboard folder and its vendor folder, and MANIFEST.in puts them in the sdist."""
    root = pathlib.Path(__file__).parent.parent
    pyproject = (root / "pyproject.toml").read_text()
    assert '"dashboard/*", "dashboard/vendor/*"' in pyproject
    assert "graft src/tracklab_sysmon/dashboard" in (root / "MANIFEST.in").read_text()


async def test_login_post_sets_the_httponly_cookie_and_a_wrong_token_is_sent_back(aiohttp_server):
    """POST /login with the token answers 303 to / with the HttpOnly cookie; a wrong one 303s to /login?failed=1."""
    server = await _service(aiohttp_server, token="s3cret")
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/"), allow_redirects=False) as page:
            assert (page.status, page.headers["Location"]) == (303, "/login")
        async with session.post(server.make_url("/login"), data={"token": "nope"}, allow_redirects=False) as wrong:
            assert (wrong.status, wrong.headers["Location"]) == (303, "/login?failed=1")
            assert COOKIE not in wrong.cookies
        async with session.post(server.make_url("/login"), data={"token": "s3cret"},
                                headers={"Origin": "http://evil.example"}, allow_redirects=False) as foreign:
            assert foreign.status == 403 and COOKIE not in foreign.cookies
        async with session.post(server.make_url("/login"), data={"token": "s3cret"}, allow_redirects=False) as right:
            assert (right.status, right.headers["Location"]) == (303, "/")
            morsel = right.cookies[COOKIE]
            assert morsel.value == "s3cret" and morsel["httponly"] and morsel["samesite"] == "Strict"
        async with session.get(server.make_url("/api/system/metrics"), cookies={COOKIE: "s3cret"}) as data:
            assert data.status == 200


# ---- the page in Chromium ---------------------------------------------------------------------------


async def test_page_loads_cleanly_and_shows_each_tick(aiohttp_server, browser):
    """No console error or CSP violation; two consecutive ticks each show the CPU value the service recorded."""
    server = await _service(aiohttp_server)
    page, problems = await _open(browser, f"http://127.0.0.1:{server.port}/")
    first = await _next_tick(page, None)
    second = await _next_tick(page, first["ts"])
    assert int(second["ts"]) > int(first["ts"])
    await page.wait_for_function(
        "ts => Number(document.getElementById('chart-cpu').dataset.last) >= Number(ts)", arg=second["ts"],
        timeout=DEADLINE_MS,
    )
    async with aiohttp.ClientSession() as session:
        for shown in (first, second):
            url = server.make_url(f"/api/system/metrics/history?since={int(shown['ts']) - 1}&limit=1")
            async with session.get(url) as response:
                [snapshot] = await response.json()
            assert snapshot["timestamp"] == int(shown["ts"])
            assert shown["cpu"] == f"{snapshot['cpu']['overall']:.1f} %"
    assert await page.locator("#connection").get_attribute("data-state") == "live"
    assert int(await page.locator("#chart-cpu").get_attribute("data-points")) >= 2
    assert problems == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_light_and_dark_screenshots(aiohttp_server, browser, scheme):
    """The page follows prefers-color-scheme (dark background in dark mode); a screenshot of each is kept in out/."""
    server = await _service(aiohttp_server)
    page, problems = await _open(browser, f"http://127.0.0.1:{server.port}/", color_scheme=scheme)
    await _next_tick(page, None)
    await _next_tick(page, (await _shown(page))["ts"])
    background = await page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    channels = [int(c) for c in re.findall(r"\d+", background)[:3]]
    assert (sum(channels) < 150) == (scheme == "dark"), background
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"dashboard-{scheme}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert problems == []


async def test_phone_width_has_no_horizontal_scroll(aiohttp_server, browser):
    """At 390 px wide the page fits: nothing overflows sideways, and the controls are reachable by Tab."""
    server = await _service(aiohttp_server)
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    await page.goto(f"http://127.0.0.1:{server.port}/")
    await _next_tick(page, None)
    overflow = await page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    focused = []
    for _ in range(6):  # the window buttons, then the node card
        await page.keyboard.press("Tab")
        active = await page.evaluate("() => document.activeElement.dataset.window"
                                     " || document.activeElement.dataset.node")
        focused.append(active)
    node_id = await page.locator("#node-title").text_content()
    assert focused[:5] == ["60", "300", "900", "3600", node_id]


async def test_256_cpu_tree_renders_the_per_core_strip(aiohttp_server, browser, tmp_path):
    """A 256-core capture draws one strip row per core, each coloured by that core's usage (0 % to 90 %)."""
    proc_root, sys_root = many_cpu_tree(tmp_path / "tree", 256)
    server = await _service(aiohttp_server, proc_root=str(proc_root), sys_root=str(sys_root))
    stop = asyncio.Event()

    async def advance() -> None:  # the capture moves on like a live machine would
        tick = 2
        while not stop.is_set():
            write_stat(proc_root, 256, tick)
            tick += 1
            await asyncio.sleep(0.1)

    overall = 100 * sum(core_busy(i) for i in range(256)) / 256
    mover = asyncio.create_task(advance())
    try:
        page, problems = await _open(browser, f"http://127.0.0.1:{server.port}/")
        await page.wait_for_function(
            "expected => document.getElementById('cores').dataset.cores === '256' &&"
            " document.getElementById('cpu-value').textContent === expected", arg=f"{overall:.1f} %",
            timeout=DEADLINE_MS,
        )
        await _next_tick(page, (await _shown(page))["ts"])
        rows = await page.evaluate("""() => {
            const canvas = document.getElementById('cores-canvas');
            const ctx = canvas.getContext('2d');
            const x = canvas.width - 1;
            return {height: canvas.height, pixels: [0, 9, 255].map(y => Array.from(ctx.getImageData(x, y, 1, 1).data))};
        }""")
    finally:
        stop.set()
        await mover
    assert rows["height"] == 256
    idle, busy, half = rows["pixels"]
    assert idle == [0x2B, 0x3A, 0x67, 255]  # core 0: 0 %, the scale's first colour
    assert busy[3] == 255 and busy[0] > 0xD0 and busy[1] < 0x60  # core 9: 90 %, red end
    assert half[3] == 255 and half != idle and half != busy  # core 255: 50 %, mid-scale
    assert problems == []


async def test_a_peer_that_goes_down_shows_as_down(tmp_path, browser):
    """With --peer, the peer gets its own card; killing the peer turns that card to 'down' with its last-seen time."""
    peer = ServiceProcess(tmp_path, "--interval", "0.2", "--node-id", "peer-node")
    local = ServiceProcess(tmp_path, "--interval", "0.2", "--node-id", "local-node", "--peer", peer.url)
    try:
        page, problems = await _open(browser, f"{local.url}/")
        card = page.locator('[data-node="peer-node"]')
        await card.wait_for(timeout=DEADLINE_MS)
        await page.wait_for_function(
            "() => document.querySelector('[data-node=\"peer-node\"]').dataset.status === 'up'", timeout=DEADLINE_MS,
        )
        assert await page.locator("#nodes button").first.get_attribute("data-node") == "local-node"
        peer.kill()
        await page.wait_for_function(
            "() => document.querySelector('[data-node=\"peer-node\"]').dataset.status === 'down'", timeout=DEADLINE_MS,
        )
        assert "last seen" in await card.locator(".status").text_content()
        await card.click()  # the switcher: the peer's last values stay readable
        assert await page.locator("#node-title").text_content() == "peer-node"
        assert await page.locator('[data-node="local-node"]').get_attribute("data-status") == "up"
        assert [p for p in problems if "peer-node" not in p] == []
    finally:
        local.kill()
        peer.kill()


async def test_restarting_the_service_shows_reconnecting_then_live_data(tmp_path, browser):
    """Killing the service turns the badge to 'reconnecting'; the same port serving again brings live ticks back."""
    service = ServiceProcess(tmp_path, "--interval", "0.2")
    try:
        page, _ = await _open(browser, f"{service.url}/")
        before = await _next_tick(page, None)
        service.kill()
        connection = page.locator("#connection")
        await page.wait_for_function(
            "() => document.getElementById('connection').dataset.state === 'reconnecting'", timeout=DEADLINE_MS,
        )
        assert "reconnecting" in await connection.text_content()
        service.start()  # same port: ServiceProcess keeps it
        await page.wait_for_function(
            "() => document.getElementById('connection').dataset.state === 'live'", timeout=DEADLINE_MS,
        )
        after = await _next_tick(page, (await _shown(page))["ts"])
        assert int(after["ts"]) > int(before["ts"])
        assert after["cpu"].endswith(" %")
    finally:
        service.kill()


async def test_token_login_form_refuses_a_wrong_token_and_accepts_the_right_one(aiohttp_server, browser):
    """With --token the page sends a browser to the form; a wrong token shows a message; the right one shows data."""
    server = await _service(aiohttp_server, token="s3cret")
    page, problems = await _open(browser, f"http://127.0.0.1:{server.port}/")
    seen_urls: list[str] = []
    page.on("framenavigated", lambda frame: seen_urls.append(frame.url))
    await page.wait_for_url("**/login", timeout=DEADLINE_MS)
    await page.fill("#token", "wrong")
    await page.click("button[type=submit]")
    await page.locator("#login-error").wait_for(state="visible", timeout=DEADLINE_MS)
    assert "not right" in await page.locator("#login-error").text_content()
    await page.fill("#token", "s3cret")
    await page.click("button[type=submit]")
    await _next_tick(page, None)
    assert page.url == f"http://127.0.0.1:{server.port}/"
    assert not any("s3cret" in url for url in seen_urls)
    [cookie] = [c for c in await page.context.cookies() if c["name"] == COOKIE]
    assert cookie["httpOnly"] is True
    assert [p for p in problems if "401" not in p] == []  # the 401s are the page asking before signing in


async def test_unknown_values_are_gaps_not_zeros(aiohttp_server, browser, tmp_path):
    """A capture that never moves has no CPU usage (null): the page shows a dash and leaves the strip empty, not 0 %."""
    proc_root, sys_root = many_cpu_tree(tmp_path / "tree", 8)
    server = await _service(aiohttp_server, proc_root=str(proc_root), sys_root=str(sys_root))
    page, problems = await _open(browser, f"http://127.0.0.1:{server.port}/")
    first = await _next_tick(page, None)
    await _next_tick(page, first["ts"])
    shown = await _shown(page)
    assert shown["cpu"] == "\u2013"  # the en dash of a missing value
    alphas = await page.evaluate("""() => {
        const canvas = document.getElementById('cores-canvas');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const opaque = data.filter((v, i) => i % 4 === 3 && v).length;
        return {cores: document.getElementById('cores').dataset.cores, opaque};
    }""")
    assert alphas == {"cores": "8", "opaque": 0}
    assert problems == []


async def test_accelerators_show_utilisation_memory_temperature_and_power(browser, tmp_path):
    """With 2 GPUs (the NVML stand-in), the table shows each one's %, MiB/GiB, °C and W, and their charts fill."""
    require_command("cc")
    proc_root, sys_root = many_cpu_tree(tmp_path / "tree", 8)
    child, url = gpu_service(tmp_path, proc_root, sys_root, 0.2, gpus=2)
    try:
        page, problems = await _open(browser, f"{url}/")
        await page.wait_for_function(
            "() => document.getElementById('acc-rows').rows.length === 2 &&"
            " Number(document.getElementById('chart-acc-power').dataset.points) >= 2", timeout=DEADLINE_MS,
        )
        rows = await page.evaluate(
            "() => Array.from(document.getElementById('acc-rows').rows, r => Array.from(r.cells, c => c.textContent))"
        )
        async with aiohttp.ClientSession() as session, session.get(f"{url}/api/system/metrics") as response:
            [snapshot] = await response.json()
        gpu1 = snapshot["accelerators"][1]
        assert (gpu1["utilization"], gpu1["temperature"], gpu1["power"]) == (11.0, 41.0, 101.0)  # the stub's values
        assert [rows[1][0], *rows[1][2:]] == ["1", "11.0 %", "2.0 GiB / 40.0 GiB", "41 °C", "101.0 W"]
        assert await page.locator("#accelerators").is_visible()
        charts = {name: json.loads(await page.locator(f"#chart-acc-{name}").get_attribute("data-values"))
                  for name in ("util", "mem", "temp", "power")}
        assert charts == {"util": [10.0, 11.0], "mem": [2.5, 5.0], "temp": [40.0, 41.0], "power": [100.0, 101.0]}
        assert problems == []
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
