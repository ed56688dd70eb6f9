"""A tracklab-sysmon service that samples only the named collectors, for bench_sections.py.

Usage: sections_service.py --keep NAMES --portfile F, NAMES comma-separated collector names (`cpu`,
`memory`, ..., as `/api/health` lists them), `none` for no collector or `all` for every default one;
`--bare`: without the app's middlewares (write deadline, JSON errors, Host check), to weigh them.
Everything else is `tracklab-sysmon serve --rest-api-port 0` on this host.
"""

from __future__ import annotations

import argparse
from typing import Any

from aiohttp import web

from tracklab_sysmon.collectors import close_collectors, default_collectors
from tracklab_sysmon.collectors.base import Collector
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.server import app as app_module
from tracklab_sysmon.server import runner
from tracklab_sysmon.service_main import run_service


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", required=True)
    parser.add_argument("--portfile", required=True)
    parser.add_argument("--bare", action="store_true")
    args = parser.parse_args()
    keep = None if args.keep == "all" else set() if args.keep == "none" else set(args.keep.split(","))

    def chosen(*positional: Any, **named: Any) -> list[Collector]:
        every = default_collectors(*positional, **named)
        if keep is None:
            return every
        unknown = keep - {c.name for c in every}
        if unknown:
            raise SystemExit(f"sections_service: no collector named {', '.join(sorted(unknown))}")
        close_collectors([c for c in every if c.name not in keep])
        return [c for c in every if c.name in keep]

    app_module.default_collectors = chosen  # the app builds its collectors through this name
    if args.bare:
        def bare_app(config: ServiceConfig) -> web.Application:
            app = app_module.create_app(config)
            app.middlewares.clear()  # still mutable: the runner freezes the app at its setup
            return app

        runner.create_app = bare_app  # the runner's own name for it
    run_service(ServiceConfig(port=0, portfile=args.portfile), "sections_service")


if __name__ == "__main__":
    main()
