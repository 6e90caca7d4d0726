"""PromQL reads off the event loop, and each user's share of the server's time.

A reviewer's tenant wrote 2,000 label values of 1 KB; one regex query then
held the event loop (``/health`` included) for 8-47 s, and one user's
back-to-back refused queries took others' topology reads from 7 to 148 ms at
the median. Reads now run in a worker thread beside the metrics actor (writes
do not wait for them), stop at their asker's deadline, and what they cost in
CPU is charged to their user, who gets 429 past ``READ_TIME_SHARE``."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from trioscope.actors.metrics import InstantQuery, MetricsActor, WriteSamples
from trioscope.config import Settings
from trioscope.domain import metrics
from trioscope.domain.principals import Role, mint_user_token
from trioscope.http import _metrics_api, create_app
from trioscope.http._metrics_api import ReadTimeShare
from trioscope.http._metrics_backends import Answer, EmbeddedMetrics, PrometheusError
from trioscope.runtime import ActorRef, ActorSpec, SupervisorSpec, open_actor_system
from trioscope.store import token_secret
from trioscope.system import supervision_tree

NOW = time.time()


def sample(name: str) -> metrics.Sample:
    return metrics.Sample((("__name__", name), ("deployment_hash", "d1"), ("tenant", "acme")), 7.0, NOW)


def metrics_tree(settings: Settings) -> SupervisorSpec:
    return SupervisorSpec(name="root", children=[ActorSpec(name="metrics", factory=lambda: MetricsActor(settings))])


class HeldRead:
    """``metrics.instant_query`` held in its thread until the test releases it."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, view: metrics.SeriesView, query: str, at: float, **bounds: Any) -> dict[str, Any]:
        self.started.set()
        released = self.release.wait(timeout=10)  # on the event loop, nothing would ever release it
        return {"released": released, "series": len(list(view.named(None)))}

    async def wait_started(self) -> None:
        with trio.fail_after(5):
            while not self.started.is_set():
                await trio.sleep(0.001)


async def test_a_read_runs_off_the_event_loop_and_writes_do_not_wait_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    held = HeldRead()
    monkeypatch.setattr(metrics, "instant_query", held)
    async with open_actor_system(metrics_tree(Settings.defaults())) as system:
        actor = system.lookup("/root/metrics")
        await actor.ask(WriteSamples("acme", "d1", [sample("before")]))
        answers: dict[type, Any] = {}

        async def ask(message: Any) -> None:
            answers[type(message)] = await actor.ask(message, timeout=20)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, InstantQuery("acme", "before", NOW))
            await held.wait_started()  # the loop runs while the read is under way
            await ask(WriteSamples("acme", "d1", [sample("during")]))
            assert answers[WriteSamples].new_series == 1  # answered while the read is held
            assert InstantQuery not in answers
            held.release.set()
        assert answers[InstantQuery] == {"released": True, "series": 2}  # the read saw it: it ran beside it


async def test_a_read_stops_at_its_askers_deadline_and_says_what_it_cost() -> None:
    async with open_actor_system(metrics_tree(Settings.defaults())) as system:
        actor = system.lookup("/root/metrics")
        await actor.ask(WriteSamples("acme", "d1", [sample(f"m{i}") for i in range(200)]))
        with pytest.raises(metrics.QueryTimedOut):
            await actor.ask(InstantQuery("acme", "count(m1)", NOW, deadline=time.monotonic() - 1))
        read = InstantQuery("acme", 'count({__name__=~"m.*1.*"})', NOW, deadline=time.monotonic() + 30)
        matching = sum("1" in f"{i}" for i in range(200))
        assert (await actor.ask(read))["result"][0]["value"][1] == str(matching)
        assert read.cost.cpu_seconds > 0


async def test_a_cancelled_caller_still_gets_the_reads_answer_and_its_cost(
        monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    held = HeldRead()
    monkeypatch.setattr(metrics, "instant_query", held)
    async with open_actor_system(metrics_tree(settings)) as system:
        backend = EmbeddedMetrics(system.lookup("/root/metrics"), settings)
        got: list[Answer] = []
        scope = trio.CancelScope()

        async def read() -> None:
            with scope:
                got.append(await backend.read("acme", "query", [("query", "before")]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await held.wait_started()
            scope.cancel()  # the client went away
            await trio.testing.wait_all_tasks_blocked()
            held.release.set()
        assert len(got) == 1 and got[0].status == 200  # its cost reached the caller, to be charged


def test_a_readers_share_holds_over_time() -> None:
    share = ReadTimeShare(0.25, 2.0)
    assert share.wait("alice", 0.0) == 0
    share.charge("alice", 1.5, 0.0)
    assert share.wait("alice", 0.0) == 0  # within its burst
    share.charge("alice", 1.5, 0.0)  # into debt: 1 s, waited off at a quarter of a second a second
    assert share.wait("alice", 0.0) == pytest.approx(4.0)
    assert share.wait("alice", 2.0) == pytest.approx(2.0)
    assert share.wait("alice", 4.1) == 0
    assert share.wait("bob", 0.0) == 0  # a share of its own


def test_readers_full_again_are_forgotten() -> None:
    share = ReadTimeShare(0.5, 1.0, max_readers=2)
    for reader in ("a", "b", "c"):
        share.charge(reader, 0.5, 0.0)
    assert len(share._buckets) == 2  # past max_readers, the oldest goes
    share.charge("d", 0.5, 10.0)
    assert list(share._buckets) == ["d"]  # the others are full again
    with pytest.raises(ValueError, match="share"):
        ReadTimeShare(0.0, 1.0)


async def test_a_user_past_their_share_gets_429_others_are_answered(settings, monkeypatch) -> None:
    """What a read cost, answered or refused, is charged to its user."""
    costs = {"mallory": _metrics_api.READ_TIME_BURST + 1.0, "eve": _metrics_api.READ_TIME_BURST + 1.0, "alice": 0.1}

    async def costly_read(self, tenant, api, params, label=""):  # noqa: ANN001, ANN202 - EmbeddedMetrics.read's
        user = tenant.removeprefix("tenant-of-")
        body = orjson.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})
        if user == "eve":  # refused as too expensive, after its CPU time was spent
            raise PrometheusError(422, "execution", "too expensive", cpu_seconds=costs[user])
        return Answer(200, body, cpu_seconds=costs[user])

    monkeypatch.setattr(EmbeddedMetrics, "read", costly_read)
    secret = token_secret(settings.auth.secret, settings.storage.data_dir)

    def token(user: str) -> dict[str, str]:
        minted = mint_user_token(secret, user_id=user, tenant=f"tenant-of-{user}", role=Role.VIEWER, now=time.time(),
                                 ttl=600)
        return {"Authorization": f"Bearer {minted}"}

    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)
        async with app.test_app() as test_app:
            client = test_app.test_client()

            async def read(user: str) -> Any:
                return await client.get("/prometheus/api/v1/query?query=up", headers=token(user))

            charged = {"mallory": time.monotonic()}
            assert (await read("mallory")).status_code == 200
            charged["eve"] = time.monotonic()
            assert (await read("eve")).status_code == 422
            for user in ("mallory", "eve"):
                refused = await read(user)
                assert refused.status_code == 429, user
                # A second of debt, waited off at a quarter of the time: 4 s from the charge, whole seconds.
                since = time.monotonic() - charged[user]
                assert math.ceil(4 - since) <= int(refused.headers["Retry-After"]) <= 4, since
                body = await refused.get_json()
                assert body["status"] == "error" and "25% of the server's time" in body["error"]
            for _ in range(3):
                assert (await read("alice")).status_code == 200


async def test_encoding_an_answer_is_charged_with_the_read_and_leaves_the_event_loop_its_turns(
        monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """A 58 MiB answer was encoded on the event loop in one orjson call (~0.1 s),
    and not charged: one viewer looping such reads took ~75% of a core within
    its 25% share. Its encoding now runs in a worker thread, an item at a time,
    and its CPU time is the read's."""
    from trioscope.http import _metrics_backends

    encoding_started, encoding_ended = threading.Event(), threading.Event()

    def slow_success(data: Any, warnings: Any = ()) -> Answer:
        encoding_started.set()
        began = time.thread_time()
        while time.thread_time() - began < 0.2:  # CPU, as orjson over a large answer
            pass
        encoding_ended.set()
        return Answer(200, orjson.dumps({"status": "success", "data": data}))

    monkeypatch.setattr(_metrics_backends, "success", slow_success)
    async with open_actor_system(metrics_tree(settings)) as system:
        backend = EmbeddedMetrics(system.lookup("/root/metrics"), settings)
        ticks = 0
        answer: list[Answer] = []

        async def read() -> None:
            answer.append(await backend.read("acme", "query", [("query", "1")]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            while not answer:
                await trio.sleep(0)
                ticks += encoding_started.is_set() and not encoding_ended.is_set()
        assert answer[0].cpu_seconds >= 0.2
        # The loop took turns while it was encoded (on the loop, none could come between its start and end).
        assert ticks >= 1


def test_an_answer_encoded_an_item_at_a_time_is_the_json_of_the_whole() -> None:
    from trioscope.http._metrics_backends import success

    cases = [({"resultType": "matrix", "result": [{"metric": {"a": "1"}, "values": [[1, "2"]]}, {"metric": {}}]}, ()),
             ({"resultType": "vector", "result": []}, ("cut",)), (["a", "b", "c"], ("cut",)), (["a"], ()),
             ({"resultType": "scalar", "result": [1.5, "2"]}, ())]
    for data, warnings in cases:
        expected = {"status": "success", "data": data, **({"warnings": list(warnings)} if warnings else {})}
        assert orjson.loads(success(data, warnings).body) == expected
