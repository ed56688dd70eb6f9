"""The seed's JavaScript WebSocket snippet as a test page, and how to read what it logs."""

from __future__ import annotations

import asyncio
import re

import pytest

# Verbatim from the seed's "WebSocket Streaming" section; only ws://localhost:8000 is replaced.
SEED_SNIPPET = """\
const ws = new WebSocket('ws://localhost:8000/ws/system-metrics');

ws.onmessage = (event) => {
    const data = JSON.parse(event.data);

    if (data.type === 'metrics') {
        console.log(`CPU: ${data.data.cpu.overall.toFixed(1)}%`);
        console.log(`Memory: ${data.data.memory.usage.toFixed(1)}%`);
    }
};
"""
# Test harness only: report how the socket ended, so a refused handshake is seen, not waited out.
HARNESS = "ws.addEventListener('close', (event) => console.log(`closed ${event.code}`));"
# The Debian Chromium, headless, with nothing that reaches beyond this machine.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
_LINE = re.compile(r"^(CPU|Memory): (\d+\.\d)%$")


def seed_page(ws_port: int) -> str:
    """An HTML page running the seed's snippet against ws://localhost:<ws_port>."""
    script = SEED_SNIPPET.replace("ws://localhost:8000", f"ws://localhost:{ws_port}")
    return f"<!doctype html><title>seed snippet</title><script>\n{script}\n{HARNESS}\n</script>"


def metrics_lines(lines: list[str]) -> list[tuple[str, float]]:
    """(name, percent) for each `CPU: x%` / `Memory: y%` console line, in order."""
    return [(m[1], float(m[2])) for m in map(_LINE.match, lines) if m]


async def console_lines(page, page_url: str, wanted, timeout: float) -> list[str]:
    """Open `page_url` in a Playwright page and collect its console lines until `wanted(lines)` holds."""
    lines: list[str] = []
    done = asyncio.Event()

    def on_console(message) -> None:
        lines.append(message.text)
        if wanted(lines):
            done.set()

    page.on("console", on_console)
    await page.goto(page_url)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    except TimeoutError:
        pytest.fail(f"the page never logged what the test waits for; console: {lines[-10:]}")
    return lines
