"""Route modules (those with a blueprint) import no other route module: what
several of them need lives in a support module, so there is one
place for each thing and a route can change without reaching into another.
Only ``_app``, which assembles the application, imports the route modules."""

from __future__ import annotations

import ast
from pathlib import Path

import trioscope.http

HTTP = Path(trioscope.http.__file__).parent
PACKAGE = "trioscope.http"


def _tree(name: str) -> ast.Module:
    return ast.parse((HTTP / f"{name}.py").read_text(), filename=f"{name}.py")


def _modules() -> list[str]:
    return sorted(path.stem for path in HTTP.glob("*.py") if path.stem != "__init__")


def _defines_blueprint(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Blueprint"
               for node in ast.walk(tree))


def _imported(tree: ast.Module) -> set[str]:
    """The modules of ``trioscope.http`` that ``tree`` imports, by their short name."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module is None:  # from . import _gate, _live
                found.update(alias.name for alias in node.names)
            elif node.level == 1:  # from ._live import x
                found.add(node.module.split(".")[0])
            elif node.level == 0 and node.module is not None and node.module.startswith(PACKAGE + "."):
                found.add(node.module.removeprefix(PACKAGE + ".").split(".")[0])
            elif node.level == 0 and node.module == PACKAGE:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    found.add(alias.name.removeprefix(PACKAGE + ".").split(".")[0])
    return found


def route_modules() -> set[str]:
    return {name for name in _modules() if _defines_blueprint(_tree(name))}


def test_the_route_modules_are_found() -> None:
    # A guard for the check below: if blueprints were found nowhere, it would pass vacuously.
    assert {"_agent_api", "_agents", "_commands", "_command_ws", "_live", "_query", "_reports"} <= route_modules()
    assert "_app" not in route_modules() and "_command_submission" not in route_modules()


def test_no_route_module_imports_another() -> None:
    routes = route_modules()
    crossings = {name: sorted(_imported(_tree(name)) & (routes - {name})) for name in sorted(routes)}
    assert {name: found for name, found in crossings.items() if found} == {}
