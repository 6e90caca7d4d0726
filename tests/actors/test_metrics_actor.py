"""The metrics actor: a read that fails fails only its asker, never the store; its
samples are written and expire by its clock, and its reads stop at their deadline."""

from __future__ import annotations

import time

import pytest

from trioscope.actors.metrics import (
    OFF_LOOP_SAMPLES, GetStats, InstantQuery, MetricsActor, NodeSamples, WriteSamples, _Expire,
)
from trioscope.config import Settings
from trioscope.domain import metrics
from trioscope.runtime import ActorSpec, SupervisorSpec, open_actor_system
from trioscope.system import METRICS, supervision_tree


async def test_a_query_that_overflows_the_evaluators_recursion_is_refused_and_the_series_stay(
        monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    tree = SupervisorSpec(name="root", children=[
        ActorSpec(name="metrics", factory=lambda: MetricsActor(settings))])
    now = time.time()
    sample = metrics.Sample((("__name__", "kept"), ("deployment_hash", "d1"), ("tenant", "acme")), 7.0, now)
    async with open_actor_system(tree) as system:
        actor = system.lookup("/root/metrics")
        await actor.ask(WriteSamples("acme", "d1", [sample]))
        real = metrics.instant_query

        def deep(*args: object, **kwargs: object) -> object:
            raise RecursionError("maximum recursion depth exceeded")

        monkeypatch.setattr(metrics, "instant_query", deep)
        with pytest.raises(metrics.QueryTooExpensive, match="nests too deeply"):
            await actor.ask(InstantQuery("acme", "kept", now))
        monkeypatch.setattr(metrics, "instant_query", real)
        answer = await actor.ask(InstantQuery("acme", "kept", now))
        assert [row["value"][1] for row in answer["result"]] == ["7"]  # a restart would have emptied the store


class Poison:
    """A message the metrics actor does not understand: handling it raises."""


async def test_a_crash_loses_no_written_sample(settings: Settings) -> None:
    """The system's stores outlive the actor: a write answered before a crash
    is still there after the restart (it used to start with empty stores)."""
    now = time.time()
    sample = metrics.Sample((("__name__", "kept"), ("deployment_hash", "d1"), ("tenant", "acme")), 7.0, now)
    async with open_actor_system(supervision_tree(settings)) as system:
        actor = system.lookup(METRICS)
        await actor.ask(WriteSamples("acme", "d1", [sample]))
        actor.tell(Poison())
        answer = await actor.ask(InstantQuery("acme", "kept", now))
        assert [row["value"][1] for row in answer["result"]] == ["7"]
        node = next(c for c in system.snapshot().root.children if c.path == METRICS)
        assert node.restarts == 1 and node.failed == 1


async def test_a_large_write_is_stored_in_a_worker_thread_and_its_refusal_reaches_the_writer(settings: Settings) -> None:
    """Beyond ``OFF_LOOP_SAMPLES`` the store's work leaves the event loop; a
    limit it meets is raised at the writer all the same, and nothing of the
    write is kept."""
    tree = SupervisorSpec(name="root", children=[
        ActorSpec(name="metrics", factory=lambda: MetricsActor(settings))])
    now = time.time()

    def points(name: str, count: int) -> list[metrics.Sample]:
        return [metrics.Sample((("__name__", name), ("deployment_hash", "d1"), ("i", str(i % 500)),
                                ("tenant", "acme")), float(i), now - 15 * (i // 500)) for i in range(count)]

    async with open_actor_system(tree) as system:
        actor = system.lookup("/root/metrics")
        outcome = await actor.ask(WriteSamples("acme", "d1", points("big", OFF_LOOP_SAMPLES + 1000)))
        assert (outcome.new_series, outcome.kept) == (500, OFF_LOOP_SAMPLES + 1000)
        with pytest.raises(metrics.WriteLimitExceeded) as refused:  # 10,000 series a deployment
            await actor.ask(WriteSamples("acme", "d1", [
                metrics.Sample((("__name__", "many"), ("deployment_hash", "d1"), ("i", str(i)), ("tenant", "acme")),
                               1.0, now) for i in range(10_000)]))
        assert refused.value.__traceback__ is not None and refused.value.code == "series_limit_reached"
        assert (await actor.ask(InstantQuery("acme", "many", now)))["result"] == []
        assert len((await actor.ask(InstantQuery("acme", "big", now)))["result"]) == 500


T0 = 1_000_000_000.0
"""A wall time long past: samples at it are older than any retention by the real clock."""


async def test_samples_are_written_and_expire_by_the_actors_clock(settings: Settings) -> None:
    now = [T0]
    tree = SupervisorSpec(name="root", children=[
        ActorSpec(name="metrics", factory=lambda: MetricsActor(settings, clock=lambda: now[0]))])
    sample = metrics.Sample((("__name__", "kept"), ("deployment_hash", "d1"), ("tenant", "acme")), 7.0, T0)
    async with open_actor_system(tree) as system:
        actor = system.lookup("/root/metrics")
        outcome = await actor.ask(WriteSamples("acme", "d1", [sample]))
        assert (outcome.kept, outcome.too_old) == (1, 0)  # by time.time() it would be too old
        now[0] = T0 + settings.storage.max_data_age + 1
        await actor.ask(_Expire())
        assert (await actor.ask(GetStats())).series == 0


def test_a_read_without_a_deadline_stops_query_timeout_after_it_is_taken(settings: Settings) -> None:
    actor = MetricsActor(settings, monotonic=lambda: 100.0)
    assert actor._deadline(InstantQuery("acme", "kept", T0)) == 100.0 + settings.metrics.query_timeout
    assert actor._deadline(InstantQuery("acme", "kept", T0, deadline=42.0)) == 42.0  # its asker's


async def test_a_probes_host_name_goes_with_its_last_host_series(settings: Settings) -> None:
    """Probes that stop by themselves send no ForgetNode: every probe id ever
    seen kept its host names until 2 x max_agents probes had been seen."""
    now = [T0]
    made: list[MetricsActor] = []

    def actor_of() -> MetricsActor:
        made.append(MetricsActor(settings, clock=lambda: now[0]))
        return made[-1]

    tree = SupervisorSpec(name="root", children=[ActorSpec(name="metrics", factory=actor_of)])
    async with open_actor_system(tree) as system:
        actor = system.lookup("/root/metrics")
        await actor.ask(NodeSamples("gone", "host-1", T0, {"cpu_usage": 1.0}))
        now[0] = T0 + settings.storage.max_data_age / 2
        await actor.ask(NodeSamples("staying", "host-2", now[0], {"cpu_usage": 2.0}))
        await actor.ask(_Expire())
        assert set(made[-1]._hostnames) == {"gone", "staying"}  # both still have series
        now[0] = T0 + settings.storage.max_data_age + 1
        await actor.ask(_Expire())
        assert set(made[-1]._hostnames) == {"staying"}
