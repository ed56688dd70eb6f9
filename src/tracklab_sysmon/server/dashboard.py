"""The live dashboard: GET / and its static files (package data), and the token login form's exchange."""

from __future__ import annotations

import hashlib
import importlib.resources
import mimetypes
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from . import keys
from .errors import json_error
from .security import COOKIE, signed_in_redirect, token_matches

STATIC_PREFIX = "/static/"
LOGIN_PATH = "/login"
# No inline script or style anywhere; the page only talks to its own origin (ws:// included in 'self').
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make form posts say `Origin: null`
    "X-Frame-Options": "DENY",
}
STATIC_CACHE = "public, max-age=3600"  # then revalidated by ETag: an upgrade shows within the hour
PAGE_CACHE = "no-cache"  # the HTML is revalidated on every visit, so new asset names are seen at once
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".json": "application/json"}


@dataclass(frozen=True, slots=True)
class Asset:
    """One file of the dashboard, read once at startup."""

    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file under the `dashboard` package data, keyed by its path relative to that folder."""
    root = importlib.resources.files("tracklab_sysmon").joinpath("dashboard")
    assets: dict[str, Asset] = {}
    pending: list[tuple[Traversable, str]] = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        for entry in folder.iterdir():
            name = prefix + entry.name
            if entry.is_dir():
                pending.append((entry, name + "/"))
                continue
            body = entry.read_bytes()
            suffix = "." + entry.name.rpartition(".")[2]
            kind = _TYPES.get(suffix) or mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            assets[name] = Asset(body, kind, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return assets


ASSETS = web.AppKey("dashboard_assets", dict[str, Asset])  # file name under dashboard/ -> its bytes


def _serve(request: web.Request, name: str, cache: str) -> web.Response:
    asset = request.app[ASSETS].get(name)
    if asset is None:
        raise web.HTTPNotFound()
    headers = {**SECURITY_HEADERS, hdrs.CACHE_CONTROL: cache, hdrs.ETAG: asset.etag}
    if asset.etag in request.headers.get(hdrs.IF_NONE_MATCH, ""):
        return web.Response(status=304, headers=headers)
    charset = "utf-8" if asset.content_type.startswith("text/") else None
    return web.Response(body=asset.body, content_type=asset.content_type, charset=charset, headers=headers)


def _signed_in(request: web.Request) -> bool:
    token = request.app[keys.CONFIG].token
    return token is None or token_matches(token, request.cookies.get(COOKIE))


async def index(request: web.Request) -> web.StreamResponse:
    """The dashboard page; a browser without the token's cookie is sent to the login form."""
    if not _signed_in(request):
        raise web.HTTPSeeOther(LOGIN_PATH)
    return _serve(request, "index.html", PAGE_CACHE)


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name.endswith(".html"):  # pages have their own routes (and cache rule)
        raise web.HTTPNotFound()
    return _serve(request, name, STATIC_CACHE)


async def login_page(request: web.Request) -> web.Response:
    return _serve(request, "login.html", PAGE_CACHE)


async def login(request: web.Request) -> web.StreamResponse:
    """POST /login (form field `token`): the right token gets the HttpOnly cookie and goes to `/`.

    The token travels in the request body only, so it never lands in a URL, a history entry or a log.
    """
    token = request.app[keys.CONFIG].token
    if token is None:
        raise web.HTTPSeeOther("/")
    if not _same_origin(request):  # another site's form must not sign a visitor in (login CSRF)
        return json_error(403, "the login form must be posted from this service's own page", "origin_not_allowed")
    form = await request.post()
    presented = form.get("token")
    if not isinstance(presented, str) or not token_matches(token, presented):
        raise web.HTTPSeeOther(LOGIN_PATH + "?failed=1")
    return signed_in_redirect(request, token, "/")


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:  # not a browser form post; no site can make a browser omit it
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()


def setup_dashboard(app: web.Application) -> None:
    """Serve the dashboard at `/`, its files under /static/, and the login form at /login."""
    app[ASSETS] = load_assets()
    app.router.add_routes([
        web.get("/", index),
        web.get(STATIC_PREFIX + "{name:.+}", static),
        web.get(LOGIN_PATH, login_page),
        web.post(LOGIN_PATH, login),
    ])
