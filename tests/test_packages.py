"""Each package that gathers its private modules' names says what it exports,
and exports exactly that: its own public names, every one importable."""

from __future__ import annotations

import importlib
from types import FunctionType, ModuleType

import pytest

PACKAGES = ["http", "runtime", "store", "wire", "workers", "domain.commands", "domain.live", "domain.metrics",
            "domain.topology"]
"""The packages with an ``__all__`` (the others re-export with ``import X as X``)."""
ALPHABETICAL = {"runtime", "domain.live"}
"""Those whose ``__all__`` is in alphabetical order (elsewhere its order groups the names: ruff's RUF022 is off)."""


@pytest.mark.parametrize("name", PACKAGES)
def test_public_names_are_exported_and_importable(name: str) -> None:
    package = importlib.import_module(f"trioscope.{name}")
    if name in ALPHABETICAL:
        assert sorted(package.__all__) == package.__all__
    exported: dict[str, object] = {}
    exec(f"from trioscope.{name} import *", exported)  # raises for a listed name that is missing
    del exported["__builtins__"]
    # A public submodule (``wire.request_signing``) is imported as itself, never re-exported.
    public = {n for n in dir(package) if not n.startswith("_") and not isinstance(getattr(package, n), ModuleType)}
    assert public == set(package.__all__) == set(exported)
    # Its own names only: nothing of trio, attrs or another package re-exported as if it were its own.
    foreign = {n: v.__module__ for n, v in exported.items()
               if isinstance(v, type | FunctionType) and not v.__module__.startswith(f"trioscope.{name}.")}
    assert foreign == {}
