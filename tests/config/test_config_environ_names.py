"""Every ``TRIOSCOPE_`` environment variable the project reads is either a
setting's or listed in ``OTHER_ENV``: otherwise the server would refuse to start
where that variable is set (an unknown ``TRIOSCOPE_`` name is a configuration
problem), e.g. under the test suite or when it re-executes itself."""

from __future__ import annotations

import pathlib
import re

import pytest

from trioscope.config import ConfigError, resolve_settings

ROOT = pathlib.Path(__file__).parents[2]
NAME = re.compile(r"""["'](TRIOSCOPE_[A-Z0-9_]*[A-Z0-9])["']""")
"""A name in quotes: read from, or put into, an environment (docstrings spell them in backticks)."""
SKIPPED_FILES = {ROOT / "tests" / "config", ROOT / "tests" / "test_cli_config.py"}
"""Where names are misspelt on purpose."""
NOT_VARIABLES = {"TRIOSCOPE_PROBE"}
"""A prefix, matched in tests/probe/test_cli.py."""


def _names_read() -> dict[str, pathlib.Path]:
    found: dict[str, pathlib.Path] = {}
    for folder in ("src", "probe", "bench", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if any(path == skipped or skipped in path.parents for skipped in SKIPPED_FILES):
                continue
            for name in NAME.findall(path.read_text(encoding="utf-8")):
                found.setdefault(name, path)
    return {name: path for name, path in found.items() if name not in NOT_VARIABLES}


NAMES = _names_read()


def test_the_scan_finds_the_names_it_must():
    assert {"TRIOSCOPE_SERVER_PORT", "TRIOSCOPE_CONFIG", "TRIOSCOPE_ALLOCATOR_PRELOADED", "TRIOSCOPE_TEST_POSTGRES",
            "TRIOSCOPE_PROBE_SERVER", "TRIOSCOPE_SERVER_URL"} <= set(NAMES)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_trioscope_variable_the_project_reads_is_accepted(name):
    try:
        resolve_settings({}, {name: "x"})
    except ConfigError as exc:  # a value its setting refuses is fine here; only the name is checked
        unknown = [str(problem) for problem in exc.problems if problem.key == name]
        assert unknown == [], f"read in {NAMES[name].relative_to(ROOT)}; add it to OTHER_ENV (config/_keys.py)"
