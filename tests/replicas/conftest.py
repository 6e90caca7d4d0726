"""Two real replicas: two ``trioscope serve`` processes on two ports, one
PostgreSQL schema of the test's own, the same user-token secret."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.server_process import ServerProcess

REPLICA_ARGS = ("--timeout-grace", "0s")
LOG_TAIL = 6000


def replica(postgres_url: str, *args: str) -> ServerProcess:
    """One replica of the database (started by ``with``)."""
    return ServerProcess(["--database", postgres_url, *REPLICA_ARGS, *args])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@contextmanager
def two_replicas(request: pytest.FixtureRequest, postgres_url: str,
                 *args: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Replicas A and B, started one after the other (the first creates the
    schema); their logs are printed if the test failed."""
    with replica(postgres_url, *args) as a, replica(postgres_url, *args) as b:
        try:
            yield a, b
        finally:
            if request.node.stash.get(_FAILED, False):
                for name, server in (("A", a), ("B", b)):
                    print(f"--- replica {name} log ---\n{server.stderr()[-LOG_TAIL:]}")  # shown by pytest


@pytest.fixture
def replicas(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with two_replicas(request, postgres_url) as both:
        yield both
