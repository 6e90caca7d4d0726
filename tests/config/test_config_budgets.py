"""Budgets checked against each other at start: one host's metric history at
``storage.max_data_age`` must fit ``agents.memory_budget`` (else every report
would get 413, from a server that started as if all were well), and the
budgets of request bodies being received must hold one body of
``server.max_body_size``."""

from __future__ import annotations

import datetime
import subprocess
import sys

import pytest

from trioscope.config import ConfigError, parse_duration, resolve_settings
from trioscope.wire import MemoryBudget, Report


def _problems(flags: dict[str, str]) -> list[str]:
    try:
        resolve_settings(flags, {})
    except ConfigError as exc:
        return [str(problem) for problem in exc.problems]
    return []


def _bare_host(history: float) -> int:
    """The estimate the report check (``MemoryBudget``) makes of a host that reports nothing else."""
    report = Report(agent_id="h", timestamp=datetime.datetime.now(datetime.UTC))
    return MemoryBudget(limit=0, history=history, process_history=history).footprint(report, 0).bytes


def test_a_month_of_history_does_not_fit_the_default_budget_and_the_line_says_what_to_change() -> None:
    (line,) = _problems({"storage.max_data_age": "720h"})
    assert line.startswith("agents.memory_budget: 4MiB (from default) cannot hold one host's metric history at "
                           "storage.max_data_age 720h (from flag --max-data-age)"), line
    assert f"{_bare_host(720 * 3600) / 1024**2:.1f} MiB" in line
    assert "raise agents.memory_budget to at least 16MiB" in line
    assert "lower storage.max_data_age to at most 188h" in line
    assert "\n" not in line


def test_the_figures_it_suggests_are_enough() -> None:
    assert _bare_host(parse_duration("188h")) <= 4 * 1024**2 < _bare_host(parse_duration("189h"))
    assert _problems({"storage.max_data_age": "188h"}) == []
    assert _problems({"storage.max_data_age": "720h", "agents.memory_budget": "16MiB"}) == []


@pytest.mark.parametrize(("age", "budget"), [("1h", "64KiB"), ("150h", "4MiB"), ("720h", "1GiB")])
def test_history_that_fits_starts(age: str, budget: str) -> None:
    assert _problems({"storage.max_data_age": age, "agents.memory_budget": budget}) == []


def test_serve_exits_2_with_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "trioscope", "serve", "--max-data-age", "720h", "--print-config"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "agents.memory_budget" in lines[0] and "storage.max_data_age" in lines[0], lines


@pytest.mark.parametrize("name", ["limits.body_bytes_per_address", "limits.body_bytes_total"])
def test_a_body_budget_below_the_largest_body_is_refused(name: str) -> None:
    (line,) = _problems({name: "8MiB"})
    assert line.startswith(f"{name}: 8MiB (from flag ") and "server.max_body_size 10MiB (from default)" in line, line
    assert _problems({name: "8MiB", "server.max_body_size": "8MiB"}) == []
