"""The job kinds, one module each, found by discovery.

A kind is a public module of this package: its name is the kind's name and
it defines ``KIND = Kind(validate=..., run=...)`` (see ``ping.py``, and
"Adding a job kind" in docs/interfaces.md). Private modules (``_*.py``) are
not kinds. Nothing lists the kinds: adding one is adding its module.

Kinds run inside the runner process after ``sf.init``; SecretFlow is passed
in as ``sf`` and never imported here at module level.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from sfnode.kinds._kind import Kind, ParamCheck
from sfnode.sfargs import JobContext

__all__ = ["Kind", "ParamCheck", "discover", "get", "names", "registry", "run_kind", "uses_spu"]


def discover(package: str = __name__) -> dict[str, Kind]:
    """Every public module of ``package`` with the :class:`Kind` it defines, by name."""
    path = importlib.import_module(package).__path__
    found: dict[str, Kind] = {}
    for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        kind = getattr(module, "KIND", None)
        if not isinstance(kind, Kind):
            raise TypeError(f"{module.__name__} defines no KIND = Kind(...); every public "
                            f"module of {package} is a job kind")
        found[info.name] = kind
    return found


@functools.lru_cache(maxsize=None)
def registry() -> Mapping[str, Kind]:
    """The kinds of this package (discovered once per process)."""
    return MappingProxyType(discover())


def names() -> tuple[str, ...]:
    return tuple(registry())


def get(name: str) -> Kind:
    """The kind called ``name``; KeyError when there is none."""
    return registry()[name]


def uses_spu(name: str) -> bool:
    return get(name).uses_spu


def run_kind(sf: Any, ctx: JobContext) -> dict[str, Any]:
    return get(ctx.spec.kind).run(sf, ctx)
