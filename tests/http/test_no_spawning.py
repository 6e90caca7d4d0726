"""The HTTP edge never starts actors: a handler sends a message to an owner
actor (the roster, the queue owner, the client owner), which decides."""

from __future__ import annotations

import ast

from tests.http.test_route_imports import _modules, _tree

SPAWNING = {"start_child", "ensure_child", "spawn"}


def _spawning_calls(tree: ast.Module) -> list[str]:
    return [f"line {node.lineno}: {node.func.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SPAWNING]


def test_the_check_sees_a_spawning_call() -> None:
    # A guard for the check below: it must see what it forbids.
    tree = ast.parse("async def f(s, spec):\n    return await s.clients.start_child(spec)\n")
    assert _spawning_calls(tree) == ["line 2: start_child"]


def test_no_http_module_starts_an_actor() -> None:
    found = {name: calls for name in _modules() if (calls := _spawning_calls(_tree(name)))}
    assert found == {}
