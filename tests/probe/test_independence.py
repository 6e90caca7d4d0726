"""The probe shares only the wire with the server: it imports
``trioscope.wire`` (the models, request signing, and how a log line looks, since
the local probe writes into its server's stream) and nothing else of
``trioscope`` (no configuration, topology, actors, HTTP, nor the server's own
modules such as ``trioscope.log_output``), so that it can be built, versioned
and reasoned about on its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parents[2] / "probe"
SHARED = ("trioscope.wire",)


def _imports(source: Path) -> list[tuple[int, str]]:
    """Every module ``source`` imports, absolute, with its line (relative
    imports stay inside the probe package)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from trioscope import config`` imports trioscope.config.
            found += [(node.lineno, f"{node.module}.{alias.name}") if node.module == "trioscope" else
                      (node.lineno, node.module) for alias in node.names]
    return found


def _shared(module: str) -> bool:
    return any(module == shared or module.startswith(f"{shared}.") for shared in SHARED)


def test_the_import_check_sees_what_it_must_refuse(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text("import trioscope.config\nfrom trioscope import runtime\n"
                      "from trioscope.domain.topology import MemoryBudget\nfrom trioscope.wirex import y\n"
                      "from trioscope.wire import Report\nfrom trioscope.wire.request_signing import sign\n"
                      "from trioscope.log_output import configure_logging\n"
                      "from . import _agent\nimport trio\n")
    refused = [module for _, module in _imports(source) if module.split(".")[0] == "trioscope" and not _shared(module)]
    assert refused == ["trioscope.config", "trioscope.runtime", "trioscope.domain.topology", "trioscope.wirex",
                       "trioscope.log_output"]


@pytest.mark.parametrize("source", sorted(PROBE.rglob("*.py")), ids=lambda p: p.name)
def test_the_probe_imports_only_the_wire_from_the_server_package(source: Path) -> None:
    outside = [f"{source.name}:{line} {module}" for line, module in _imports(source)
               if module.split(".")[0] == "trioscope" and not _shared(module)]
    assert outside == [], f"the probe may import only {', '.join(SHARED)} from the server package"


def test_loading_the_probe_loads_nothing_of_the_server_but_the_wire() -> None:
    # The wire package must not reach back into the server either: what the
    # probe's modules load, transitively, in a fresh interpreter.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, trioscope_probe.cli\n"
         "print('\\n'.join(m for m in sys.modules if m.split('.')[0] == 'trioscope'))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert set(SHARED) <= set(loaded)
    assert [m for m in loaded if m != "trioscope" and not _shared(m)] == []
