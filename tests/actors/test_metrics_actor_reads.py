"""The metrics actor's reads: whatever fails evaluating one is its asker's
answer, never a crash (a crash loop of this actor used to stop the server)."""

from __future__ import annotations

import time

import attrs
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


async def test_a_parser_panic_is_a_bad_query() -> None:
    """promql_parser panics (a BaseException) on some numbers past its range."""
    settings = Settings.defaults()
    tree = SupervisorSpec(name="root", children=[ActorSpec(name="metrics", factory=lambda: MetricsActor(settings))])
    async with open_actor_system(tree) as system:
        actor = system.lookup("/root/metrics")
        for query in ("x[1e30]", "x offset 1e400"):
            with pytest.raises(metrics.BadQuery, match="cannot parse the query"):
                await actor.ask(InstantQuery("acme", query, time.time()))
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
