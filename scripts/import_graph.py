"""Print the package's intra-package import graph and any import cycles (module-level and late imports)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "tracklab_sysmon"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path, path: Path) -> set[str]:
    """Intra-package modules imported anywhere in `path`, TYPE_CHECKING blocks included."""
    here = module_name(root, path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith(PACKAGE):
                continue
            for alias in node.names:  # `from . import wire` names a module, `from .x import f` does not
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _is_module(root, candidate) else base)
    # Importing a.b.c from outside a.b runs a.b's __init__ first: count those parent packages (the top
    # package's __init__ only loads names lazily, so it is left out; a sibling's parent is already loaded).
    for name in list(found):
        parts = name.split(".")
        parents = (".".join(parts[:i]) for i in range(2, len(parts)))
        found.update(p for p in parents if not here.startswith(p + "."))
    found.discard(here)
    return found


def _is_module(root: Path, name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (root / rel).with_suffix(".py").exists() or (root / rel / "__init__.py").exists()


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    root = Path(__file__).resolve().parent.parent / "src" / PACKAGE
    graph = {module_name(root, p): imports_of(root, p) for p in sorted(root.rglob("*.py"))}
    for module, targets in sorted(graph.items()):
        short = [t.removeprefix(PACKAGE + ".") for t in sorted(targets)]
        print(f"{module.removeprefix(PACKAGE + '.') or PACKAGE:32} -> {', '.join(short) or '-'}")
    loops = cycles(graph)
    print(f"\n{len(loops)} import cycle(s)")
    for loop in loops:
        print("  " + " <-> ".join(m.removeprefix(PACKAGE + ".") for m in loop))
    return 1 if loops else 0


if __name__ == "__main__":
    sys.exit(main())
