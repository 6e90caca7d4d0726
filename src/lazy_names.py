"""Names a package exports but imports only when first used (PEP 562's module
``__getattr__``): those whose modules load a driver a process may never need,
nats-py for the report bus, psycopg for PostgreSQL. A server that uses neither
(the embedded default, every test's server) started ready in 1.27 s of CPU
with them left out, 1.56 s with both loaded."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package`` (called while its ``__init__`` runs):
    each name of ``modules`` imported from its module (relative to the
    package) when first asked for, then kept in the package as any name it
    imported. Modules that only annotate with such a name import it under
    ``TYPE_CHECKING``, as the package itself does for type checkers."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # found there from now on, without this function
        return value

    return __getattr__
