"""The package's public surface: `__all__` complete and importable, and `import tracklab_sysmon` cheap."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pathlib
import subprocess
import sys

import pytest

import tracklab_sysmon
from tracklab_sysmon import client, errors, monitor, sdk

# Modules whose public names the package re-exports, and names of theirs that stay module-level.
_REEXPORTED = {
    client: {"default_url", "default_token", "auth_headers", "ws_url"},
    monitor: set(),
    sdk: {"SystemMetrics", "aggregate", "flatten_snapshot"},
    # Raised and caught inside the service; users meet them only as log text or HTTP/WS errors.
    errors: {
        "ParseError", "Unavailable", "NvmlUnavailable", "GpuLost", "BadMessage", "BindError", "WireError", "describe",
        "SourceError", "RpcFailed", "RpcError",
    },
}


def test_all_names_resolve():
    """Every name in `__all__` is, from the package, the very object its defining module holds under that name."""
    assert "__version__" in tracklab_sysmon.__all__
    assert tracklab_sysmon.__version__ == importlib.metadata.version("tracklab-sysmon")
    for name in sorted(set(tracklab_sysmon.__all__) - {"__version__"}):
        value = getattr(tracklab_sysmon, name)
        assert value.__name__ == name, name
        assert getattr(importlib.import_module(value.__module__), name) is value, name
        assert value.__module__ in {module.__name__ for module in _REEXPORTED}, name


def test_all_is_complete():
    """Every public class/function defined in a re-exporting module is in `__all__`, unless listed as module-level."""
    missing = []
    for module, module_level in _REEXPORTED.items():
        for name, value in vars(module).items():
            if name.startswith("_") or name in module_level:
                continue
            defined_here = (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ == module.__name__
            if defined_here and name not in tracklab_sysmon.__all__:
                missing.append(f"{module.__name__}.{name}")
    assert missing == []


def test_all_is_the_literal_list_the_lazy_loader_serves():
    """`__all__` (written out by hand) names exactly what the lazy loader serves, plus `__version__`."""
    assert sorted(tracklab_sysmon.__all__) == sorted(["__version__", *tracklab_sysmon._LAZY])
    assert len(set(tracklab_sysmon.__all__)) == len(tracklab_sysmon.__all__)


def test_every_exception_is_in_the_one_error_tree():
    """Every exception class the package defines lives in `errors` and derives from SysmonError."""
    import importlib
    import pkgutil

    strays = []
    for info in pkgutil.walk_packages(tracklab_sysmon.__path__, "tracklab_sysmon."):
        if info.name.startswith("tracklab_sysmon.integrations"):
            continue  # needs the fastapi extra
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            is_own_exception = (
                inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__
            )
            if is_own_exception and module is not errors and not name.startswith("_"):
                strays.append(f"{info.name}.{name}")
    assert strays == []
    assert all(issubclass(v, errors.SysmonError) for v in vars(errors).values()
               if inspect.isclass(v) and issubclass(v, BaseException) and v.__module__ == errors.__name__)


def test_seed_import_names_exist():
    """The seed's import lines, with tracklab renamed, name real objects."""
    from tracklab_sysmon import SystemMonitor, get_global_monitor, start_system_monitor, stop_system_monitor
    from tracklab_sysmon.client import SystemMonitorClient
    from tracklab_sysmon.integrations.fastapi import setup_websocket_routes
    from tracklab_sysmon.sdk import SystemMetricsConfig, init_system_metrics

    assert all(callable(x) for x in (SystemMonitor, get_global_monitor, start_system_monitor, stop_system_monitor,
                                     SystemMonitorClient, setup_websocket_routes, SystemMetricsConfig,
                                     init_system_metrics, tracklab_sysmon.init))


def test_import_is_lazy():
    """`import tracklab_sysmon` loads neither aiohttp nor fastapi nor any submodule of ours."""
    code = (
        "import sys, tracklab_sysmon\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'fastapi', 'tracklab_sysmon')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['tracklab_sysmon']"


def test_client_and_relay_load_nothing_of_the_server():
    """The client and the FastAPI relay share paths and bodies through `protocol`: importing them loads
    neither the server nor the sampler, the C helper, NVML or prometheus_client."""
    code = (
        "import sys, tracklab_sysmon.client, tracklab_sysmon.integrations.fastapi\n"
        "heavy = ('tracklab_sysmon.server', 'tracklab_sysmon.sampler', 'tracklab_sysmon._sysmon_cffi',\n"
        "         'tracklab_sysmon.collectors', 'pynvml', 'prometheus_client')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_attribute_is_attribute_error():
    """A misspelt name fails with AttributeError naming it, not with an import error."""
    with pytest.raises(AttributeError, match="SystemMonitr"):
        tracklab_sysmon.SystemMonitr  # noqa: B018


def test_the_package_has_no_import_cycle():
    """scripts/import_graph.py finds no cycle among the package's modules (late imports included)."""
    script = pathlib.Path(__file__).parent.parent / "scripts" / "import_graph.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    assert "0 import cycle(s)" in result.stdout
