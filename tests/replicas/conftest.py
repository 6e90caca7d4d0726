"""Two real replicas: two ``trioscope serve`` processes on two ports, one
PostgreSQL schema of the test's own, the same user-token secret."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server_process import ServerProcess

REPLICA_ARGS = ("--timeout-grace", "0s")


def replica(postgres_url: str, *args: str) -> ServerProcess:
    """One replica of the database (started by ``with``)."""
    return ServerProcess(["--database", postgres_url, *REPLICA_ARGS, *args])


@pytest.fixture
def replicas(postgres_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Replicas A and B, started one after the other (the first creates the schema)."""
    with replica(postgres_url) as a, replica(postgres_url) as b:
        yield a, b
