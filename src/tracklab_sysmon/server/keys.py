"""Typed application keys shared by the server modules."""

from __future__ import annotations

from aiohttp import web

from ..config import ServiceConfig
from ..sampler import Sampler
from .bus import SnapshotBus

CONFIG = web.AppKey("config", ServiceConfig)
SAMPLER = web.AppKey("sampler", Sampler)
SYSTEM_INFO_BYTES = web.AppKey("system_info_bytes", bytes)
STARTED_AT = web.AppKey("started_at", float)  # monotonic seconds
BUS = web.AppKey("bus", SnapshotBus)  # every node's encoded snapshots, local and peers
