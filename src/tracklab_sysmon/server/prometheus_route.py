"""GET /metrics: prometheus-client and the exposition load on the first scrape, not at start-up."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler


class Exposition:
    """The app's /metrics handler once built: a service nobody scrapes never imports prometheus-client
    (about 0.8 MiB of resident memory and 20 ms of imports, measured in benchmarks/bench_memory.py)."""

    __slots__ = ("handler",)

    def __init__(self) -> None:
        self.handler: Handler | None = None


EXPOSITION = web.AppKey("prometheus_exposition", Exposition)


def setup_prometheus(app: web.Application) -> None:
    """Room for the handler; the app is frozen once it runs, so the holder is set now and filled later."""
    app[EXPOSITION] = Exposition()


async def metrics(request: web.Request) -> web.StreamResponse:
    """GET /metrics; prometheus-client picks text or OpenMetrics from the Accept header."""
    exposition = request.app[EXPOSITION]
    if exposition.handler is None:  # no await before the assignment: two first scrapes cannot both build it
        from .prometheus import exposition_handler

        exposition.handler = exposition_handler(request.app)
    response: web.StreamResponse = await exposition.handler(request)
    return response
