"""The HTTP side: app factory, routes, and the process runner."""

from .app import create_app

__all__ = ["create_app"]
