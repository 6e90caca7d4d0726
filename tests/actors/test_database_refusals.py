"""The store's refusals (the database away, an outcome nobody can tell) are
refusals like every other: declared in ``trioscope.actors.refusals``, so that
the HTTP edge maps them without importing the store actor for them."""

from __future__ import annotations

import ast
from pathlib import Path

from trioscope.actors import refusals, store
from trioscope.http import _errors


def test_the_store_refusals_are_declared_with_the_others() -> None:
    for name in ("DatabaseUnavailable", "OutcomeUnknown"):
        refusal = getattr(refusals, name)
        assert refusal.__module__ == "trioscope.actors.refusals"
        assert issubclass(refusal, refusals.REFUSALS)  # answered to the asker, never a crash
        assert getattr(store, name) is refusal  # what the store raises


def test_the_http_edge_takes_them_from_the_refusals() -> None:
    tree = ast.parse(Path(_errors.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "trioscope.actors.refusals" in imported and "trioscope.actors.store" not in imported
