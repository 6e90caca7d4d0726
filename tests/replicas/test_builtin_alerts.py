"""The server's own alert rules are off on replicas: each replica hears only
the requests that reach it, so an agent polling the other one would be found
offline here. Prometheus evaluates the shipped rules over all replicas instead."""

from __future__ import annotations

from tests.waiting import eventually

from .conftest import replica

OFF = "built-in alert rules are off"


async def test_a_replica_does_not_evaluate_the_builtin_rules_and_says_why(postgres_url: str) -> None:
    args = ("--alert-agent-offline-after", "1s", "--alert-evaluation-interval", "100ms")
    with replica(postgres_url, *args) as server:
        async def said() -> bool:
            return OFF in server.stderr()

        await eventually(said)
        assert "config/prometheus/alerts.yml" in server.stderr()
