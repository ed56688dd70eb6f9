"""Exceptions raised inside the service (client-side errors live in `client.py`)."""


class SysmonError(Exception):
    """Base class of every error this package raises on purpose."""


class ParseError(SysmonError, ValueError):
    """A kernel file did not have the shape its parser expects."""


class ConfigError(SysmonError, ValueError):
    """A service option is invalid; the message is one readable line."""


class BackendUnavailable(SysmonError, ImportError):
    """The hot-path backend asked for by TRACKLAB_SYSMON_NATIVE cannot be used."""
