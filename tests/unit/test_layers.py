"""Imports only go down: the package's import graph has no cycle, and no module
borrows from the process it starts or from the Celery app."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import sfnode

PACKAGE = Path(sfnode.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str) -> set[str]:
    """The package's modules ``name`` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports(name) for name in MODULES}


def test_no_import_cycle() -> None:
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name not in done:
            for target in GRAPH[name]:
                visit(target, (*path, name))
            done.add(name)

    for name in GRAPH:
        visit(name, ())


def layer(module: str) -> str:
    """The top-level module of the package that ``module`` belongs to (``sfnode.kinds.psi``:
    ``sfnode.kinds``)."""
    return ".".join(module.split(".")[:2])


def test_imports_go_down_the_module_map_of_the_package_docstring() -> None:
    order = [f"sfnode.{name}" for name in re.findall(r"^- ``(\w+)``", sfnode.__doc__ or "", re.M)]
    assert sorted(order) == sorted({layer(m) for m in MODULES} - {"sfnode", "sfnode.__main__"})
    for module, targets in GRAPH.items():
        if layer(module) not in order:
            continue
        for target in targets - {"sfnode"}:
            if layer(target) != layer(module):
                assert order.index(layer(target)) < order.index(layer(module)), (module, target)


@pytest.mark.parametrize(("importer", "imported"), [
    ("sfnode.supervise", "sfnode.runner"),  # the parent of the runner's process
    ("sfnode.app", "sfnode.probe"),  # the parent of the probe's process
    ("sfnode.status", "sfnode.probe"),
    ("sfnode.status", "sfnode.app"),  # app builds a Celery app from the environment at import
    ("sfnode.cli", "sfnode.app"),
])
def test_forbidden_imports(importer: str, imported: str) -> None:
    assert imported not in GRAPH[importer]
