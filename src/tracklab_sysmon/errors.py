"""Every exception this package raises on purpose, in one tree (a leaf: imports nothing of the package).

::

    SysmonError                      base of everything below
    ├── ParseError                   a kernel file did not have the shape its parser expects (ValueError)
    ├── ConfigError                  an invalid option; one readable line (ValueError)
    ├── BackendUnavailable           the requested hot-path backend cannot be used (ImportError)
    ├── Unavailable                  a collector's hardware or library is absent: a normal state
    │   └── NvmlUnavailable          NVML cannot be used (no bindings, no library, no driver)
    ├── GpuLost                      a GPU answered NVML_ERROR_GPU_IS_LOST
    ├── SourceError                  a vendor tool or service that was there failed (exited, hung, garbage)
    │   └── RpcFailed                a call to a vendor's gRPC service failed; `.detail`
    ├── BadMessage                   an invalid WebSocket client message; `.code` (ValueError)
    ├── WireError                    JSON that is not a valid snapshot; starts with the field's path (ValueError)
    ├── BindError                    the listening socket could not be opened
    ├── MonitorStartError            a managed service did not come up; `.stderr`
    └── ClientError                  base of what the client raises (client-side)
        ├── ServiceUnavailable       no connection, connection lost, timed out
        ├── ProtocolError            the answer was not the expected JSON
        └── ResponseError            HTTP 4xx/5xx or an error frame; `.status`, `.code`
            └── NotFound             404: unknown route or node_id
"""

from __future__ import annotations

import errno


class SysmonError(Exception):
    """Base class of every error this package raises on purpose."""


class ParseError(SysmonError, ValueError):
    """A kernel file did not have the shape its parser expects."""


class ConfigError(SysmonError, ValueError):
    """A service option is invalid; the message is one readable line."""


class BackendUnavailable(SysmonError, ImportError):
    """The hot-path backend asked for by TRACKLAB_SYSMON_NATIVE cannot be used."""


class Unavailable(SysmonError):
    """The hardware or library a collector needs is not here; a normal state, not an error."""


class NvmlUnavailable(Unavailable):
    """NVML cannot be used here (no bindings, no library, no driver); the message says which."""


class GpuLost(SysmonError):
    """The device answered NVML_ERROR_GPU_IS_LOST: it needs a reset and its fields are gone."""


class SourceError(SysmonError):
    """A vendor tool or service the collector reads (neuron-monitor, hl-smi, libtpu's metrics service) failed."""


class RpcFailed(SourceError):
    """A call to a vendor's gRPC service failed; `detail` is the status and message (`UNAVAILABLE: ...`)."""

    def __init__(self, service: str, detail: str) -> None:
        super().__init__(f"{service}: {detail}")
        self.detail = detail


class RpcError(SysmonError):
    """A gRPC call (`_grpc_unary`) that gave no message: its status name (UNAVAILABLE, NOT_FOUND...) and why."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class BadMessage(SysmonError, ValueError):
    """A client message that is not valid; `code` goes into the error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class WireError(SysmonError, ValueError):
    """Wire JSON that is not a valid snapshot; the message starts with the bad field's path."""


class BindError(SysmonError):
    """The listening socket could not be opened (port taken, address not local, ...)."""


class MonitorStartError(SysmonError):
    """The service did not come up; `stderr` holds what it printed."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(f"{message}\n--- service stderr ---\n{stderr}" if stderr.strip() else message)
        self.stderr = stderr


class ClientError(SysmonError):
    """Base class of the client's errors."""


class ServiceUnavailable(ClientError):
    """The service could not be reached, dropped the connection or did not answer in time."""


class ProtocolError(ClientError):
    """The service's answer was not the JSON shape this client expects."""


class ResponseError(ClientError):
    """The service answered with an error; `status` is the HTTP status (None for a WS frame)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NotFound(ResponseError):
    """The route or node does not exist (HTTP 404)."""


def describe(exc: BaseException) -> str:
    """One line for a collector's status; an OSError leads with its errno's name (EIO, EACCES...)."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno in errno.errorcode:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{errno.errorcode[exc.errno]}: {exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc}"
