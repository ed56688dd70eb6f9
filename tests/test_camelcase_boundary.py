"""Only the wire modules spell camelCase JSON names; every other module holds typed records named in Python terms."""

from __future__ import annotations

import ast
import pathlib
import re

PACKAGE = pathlib.Path(__file__).parent.parent / "src" / "tracklab_sysmon"
CAMEL = re.compile(r"^[a-z]+[A-Z][A-Za-z0-9]*$")  # digits too: memoryV2, pcieGen4

# The modules whose job is the JSON shape: records (wire) and the REST/WebSocket bodies (protocol).
WIRE_MODULES = frozenset({"wire.py", "protocol.py"})

# Another program's spelling that we read or call, never a key of ours: allowed for good.
FOREIGN = frozenset({
    ("_nvml.py", "nvmlDeviceGetCurrentClocksEventReasons"),  # nvidia-ml-py's function name (getattr)
    ("_dcgm.py", "fieldIds"),  # DcgmReader's keyword arguments
    ("_dcgm.py", "updateFrequency"),
    ("_dcgm.py", "gpuIds"),
    ("_nvlink.py", "nvmlDeviceGetFieldValues"),  # the NVML entry point looked up by name
    ("collectors/apple.py", "vramUsedBytes"),  # ioreg's PerformanceStatistics property names
    ("collectors/apple.py", "vramFreeBytes"),
    ("_procfs.py", "kB"),  # the unit /proc/meminfo writes
})


def camelcase_names(source: str) -> list[tuple[int, str]]:
    """(line, name) of every camelCase string constant and keyword-argument name in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and CAMEL.match(node.value):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.keyword) and node.arg and CAMEL.match(node.arg):
            found.append((node.value.lineno, node.arg))  # dict(busId=...) spells a key too
    return sorted(found)


def _hits() -> dict[str, list[tuple[int, str]]]:
    """camelCase names per module (relative path), wire modules and foreign names left out."""
    hits = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module in WIRE_MODULES:
            continue
        names = [(line, name) for line, name in camelcase_names(path.read_text()) if (module, name) not in FOREIGN]
        if names:
            hits[module] = names
    return hits


def test_no_module_outside_wire_spells_a_camelcase_key():
    """A camelCase literal in any module but wire and protocol fails, listing file:line."""
    offenders = [
        f"src/tracklab_sysmon/{module}:{line}: {name!r}"
        for module, names in _hits().items()
        for line, name in names
    ]
    assert offenders == [], "camelCase JSON names belong in wire.py or protocol.py:\n" + "\n".join(offenders)


def test_foreign_list_holds_no_stale_entry():
    """Each foreign name still occurs where it is listed: cleaned entries go."""
    seen = {
        (path.relative_to(PACKAGE).as_posix(), name)
        for path in PACKAGE.rglob("*.py")
        for _, name in camelcase_names(path.read_text())
    }
    assert sorted(FOREIGN - seen) == []


def test_scanner_sees_keys_subscripts_paths_and_keywords_but_not_python_names():
    """The scanner flags dict keys, subscripts, path tuples, f-string parts and keyword keys; snake_case passes."""
    source = (
        'body = {"busId": 1}\n'
        'x = snap["lastSeen"]\n'
        'PATHS = (("disk", "ioRead"),)\n'
        'y = dict(nodeId=1)\n'
        'z = f"{a}fanSpeed"\n'
        'w = {"pcieGen4": 1}\n'
        'ok = {"bus_id": 1, "URL": 2, "Title": 3, "kb": 4, "memory_v2": 5}\n'
    )
    assert camelcase_names(source) == [
        (1, "busId"), (2, "lastSeen"), (3, "ioRead"), (4, "nodeId"), (5, "fanSpeed"), (6, "pcieGen4")
    ]
