"""The metrics actor's reads: whatever fails evaluating one is its asker's
answer, never a crash (a crash loop of this actor used to stop the server)."""

from __future__ import annotations

import time

import attrs
import promql_parser
import pytest

from trioscope.actors.metrics import InstantQuery, LabelNames, MetricsActor, QueryFailed, WriteSamples
from trioscope.config import Settings
from trioscope.domain import metrics
from trioscope.runtime import ActorSpec, SupervisorSpec, open_actor_system


async def test_any_exception_in_a_read_is_query_failed_and_the_actor_never_restarts(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.defaults()
    tree = SupervisorSpec(name="root", children=[ActorSpec(name="metrics", factory=lambda: MetricsActor(settings))])
    now = time.time()
    sample = metrics.Sample((("__name__", "kept"), ("deployment_hash", "d1"), ("tenant", "acme")), 7.0, now)
    async with open_actor_system(tree) as system:
        actor = system.lookup("/root/metrics")
        await actor.ask(WriteSamples("acme", "d1", [sample]))

        def broken(*args: object, **kwargs: object) -> object:
            raise ValueError("math domain error")

        monkeypatch.setattr(metrics, "instant_query", broken)
        for _ in range(10):
            with pytest.raises(QueryFailed, match=r"\(ValueError\)"):
                await actor.ask(InstantQuery("acme", "secret_query_text", now))
        assert "secret_query_text" in caplog.text  # logged with the query, for the operator
        monkeypatch.undo()
        assert await actor.ask(LabelNames("acme", ())) == ["__name__", "deployment_hash", "tenant"]
        node = next(child for child in system.snapshot().root.children if child.path == "/root/metrics")
        assert node.restarts == 0 and node.failed == 0


async def test_durations_past_the_parsers_range_are_a_bad_query() -> None:
    """promql_parser panics (a BaseException, after its hook wrote to stderr) on
    durations past its range: refused before it."""
    settings = Settings.defaults()
    tree = SupervisorSpec(name="root", children=[ActorSpec(name="metrics", factory=lambda: MetricsActor(settings))])
    async with open_actor_system(tree) as system:
        actor = system.lookup("/root/metrics")
        for query in ("x[1e30]", "x offset 1e400", "x offset -inf", "x[5m:2e19]", "x[0xffffffffffffffff]"):
            with pytest.raises(metrics.BadQuery, match="is out of range"):
                await actor.ask(InstantQuery("acme", query, time.time()))
        node = next(child for child in system.snapshot().root.children if child.path == "/root/metrics")
        assert node.restarts == 0


async def test_a_parser_panic_is_a_bad_query(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any other panic of the parser is the query's too (PyO3's ``PanicException``)."""
    panic = type("PanicException", (BaseException,), {"__module__": "pyo3_runtime"})

    def panicking(_query: str) -> None:
        raise panic("cannot convert float seconds to Duration")

    monkeypatch.setattr(promql_parser, "parse", panicking)
    settings = Settings.defaults()
    tree = SupervisorSpec(name="root", children=[ActorSpec(name="metrics", factory=lambda: MetricsActor(settings))])
    async with open_actor_system(tree) as system:
        actor = system.lookup("/root/metrics")
        with pytest.raises(metrics.BadQuery, match="cannot parse the query"):
            await actor.ask(InstantQuery("acme", "x", time.time()))
        node = next(child for child in system.snapshot().root.children if child.path == "/root/metrics")
        assert node.restarts == 0


@pytest.mark.parametrize("read", [
    InstantQuery("acme", "count(kept)", 0.0), LabelNames("acme", ()), LabelNames("acme", ("kept",)),
], ids=["query", "labels", "labels matching"])
async def test_every_read_stops_at_metrics_query_timeout(read: InstantQuery | LabelNames) -> None:
    """The engine's deadline is the setting's, for queries and lookups alike: a
    read that is still running then is refused (Prometheus: 503 timeout), not
    left holding the event loop the actor shares with every request."""
    settings = Settings.defaults()
    timed_out = attrs.evolve(settings, metrics=attrs.evolve(settings.metrics, query_timeout=0.0))
    tree = SupervisorSpec(name="root", children=[ActorSpec(name="metrics", factory=lambda: MetricsActor(timed_out))])
    sample = metrics.Sample((("__name__", "kept"), ("deployment_hash", "d1"), ("tenant", "acme")), 7.0, time.time())
    async with open_actor_system(tree) as system:
        actor = system.lookup("/root/metrics")
        await actor.ask(WriteSamples("acme", "d1", [sample]))
        with pytest.raises(metrics.QueryTimedOut, match=r"metrics\.query_timeout"):
            await actor.ask(read)


async def test_reads_run_beside_writes_and_other_tenants_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A read does not hold the actor: while one of tenant ``a`` runs, writes (of
    ``a`` too) and another tenant's reads are answered; ``a``'s next read waits
    for its turn; past ``READS_AT_ONCE`` reads at once, a read waits, and is
    answered "timed out" if it cannot start by its deadline. Waiting for each
    read, a viewer looping large reads put every other tenant's query and every
    agent's write behind them."""
    import threading

    import trio

    from tests.waiting import eventually
    from trioscope.actors.metrics import READS_AT_ONCE

    settings = Settings.defaults()
    tree = SupervisorSpec(name="root", children=[ActorSpec(name="metrics", factory=lambda: MetricsActor(settings))])
    releases = {tenant: threading.Event() for tenant in ("a", "b", "c")}
    entered = {tenant: threading.Event() for tenant in ("a", "b", "c")}
    answer = MetricsActor._answer_read

    def held(self: MetricsActor, message: InstantQuery, clock: metrics.Clock) -> object:
        if message.query == "held":
            entered[message.tenant].set()
            releases[message.tenant].wait(60)
        return answer(self, message, clock)

    monkeypatch.setattr(MetricsActor, "_answer_read", held)
    now = time.time()

    def sample(tenant: str) -> metrics.Sample:
        return metrics.Sample((("__name__", "kept"), ("deployment_hash", "d1"), ("tenant", tenant)), 1.0, now)

    async with open_actor_system(tree) as system, trio.open_nursery() as nursery:
        actor = system.lookup("/root/metrics")
        answered: list[str] = []

        async def read(tenant: str, query: str) -> None:
            await actor.ask(InstantQuery(tenant, query, now), timeout=60)
            answered.append(f"{tenant} {query}")

        nursery.start_soon(read, "a", "held")
        assert await trio.to_thread.run_sync(entered["a"].wait, 30)
        nursery.start_soon(read, "a", "kept")  # a's next: after the held one
        await actor.ask(WriteSamples("a", "d1", [sample("a")]), timeout=10)
        await actor.ask(WriteSamples("b", "d1", [sample("b")]), timeout=10)
        found = await actor.ask(InstantQuery("b", "kept", now), timeout=10)
        assert [row["metric"]["tenant"] for row in found["result"]] == ["b"]
        assert answered == []
        assert READS_AT_ONCE == 2
        nursery.start_soon(read, "b", "held")
        assert await trio.to_thread.run_sync(entered["b"].wait, 30)
        with pytest.raises(metrics.QueryTimedOut, match="waited past metrics.query_timeout"):
            await actor.ask(InstantQuery("c", "kept", now, deadline=time.monotonic() + 0.5), timeout=10)
        releases["a"].set()
        releases["b"].set()

        async def all_answered() -> bool:
            return len(answered) == 3

        await eventually(all_answered)
        assert answered.index("a held") < answered.index("a kept")
        assert await actor.ask(InstantQuery("c", "kept", now), timeout=10) == {"resultType": "vector", "result": []}
        node = next(child for child in system.snapshot().root.children if child.path == "/root/metrics")
        assert node.restarts == 0 and node.failed == 0
