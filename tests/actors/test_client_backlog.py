"""A client that reads a large reset slowly: the diffs that come meanwhile
wait behind it, and it is sent them once it has read it, not another reset
(a 159 MB view read at 10 MB/s took 16 s; 16 diffs at 4 a second filled its
outbox in 4, and it was reset again and again). A client that stops reading
is still closed. The topology moves (a report a quarter second); a mock
clock; the test reads the outbox as the socket's writer would, taking as long
over the reset as a slow client takes to read it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import orjson
import pytest
import trio

import trioscope.actors.client
import trioscope.actors.hub
from tests.actors.test_client_actor import HUB, T0, StillHub
from tests.synthetic import host_report
from trioscope.actors.client import FromClient, LiveCounters, client_spec
from trioscope.actors.client_link import POLICY_VIOLATION, ClientLink
from trioscope.actors.hub import LiveUpdate, ReportUpdate
from trioscope.config import Settings
from trioscope.domain.live import Filter, report_frame, reset_frame
from trioscope.domain.topology import TopologyGraph, TopologySnapshot, View
from trioscope.runtime import ActorRef, ActorSpec, Strategy, SupervisorSpec, dynamic_supervisor, open_actor_system
from trioscope.wire import decode_report

HOSTS = 4
RATE = 4
"""Topology updates a second (``websocket.max_rate``)."""


class MovingTopology:
    """A graph of ``HOSTS`` hosts, a host's processes changing with each report."""

    def __init__(self) -> None:
        self.graph = TopologyGraph(T0)
        self.reports = 0
        for index in range(1, HOSTS + 1):
            self._report(index)
        self.snapshot, _ = self.graph.publish(T0)

    def _report(self, index: int) -> None:
        now = T0 + self.reports
        self.reports += 1
        report = host_report(index, timestamp=now, containers=2, processes=6 + self.reports % 5, connections=0,
                             cpu=float(self.reports % 90))
        self.graph.apply(decode_report(report), now)

    def next(self) -> LiveUpdate:
        """The next version, as the hub tells it."""
        self._report(1 + self.reports % HOSTS)
        snapshot, diff = self.graph.publish(T0 + self.reports)
        assert diff is not None
        self.snapshot = snapshot
        return LiveUpdate(diff, snapshot)


@attrs.define
class SlowSocket:
    """What the socket's writer does for a client that reads its resets
    slowly: ``slow`` seconds to send each reset (its ``slow_resets``-th on),
    the other frames at once."""

    link: ClientLink
    ref: ActorRef
    counters: LiveCounters
    slow: float
    slow_resets: int = 1
    frames: list[dict[str, Any]] = attrs.field(factory=list)

    def tell(self, message: dict[str, Any]) -> None:
        self.ref.tell(FromClient(orjson.dumps(message).decode()))

    @property
    def resets(self) -> list[dict[str, Any]]:
        return [frame for frame in self.frames if frame["payload"].get("reset")]

    async def write(self) -> None:
        async for frame in self.link.frames:
            self.frames.append(message := orjson.loads(str(frame)))
            if message["payload"].get("reset") and len(self.resets) >= self.slow_resets:
                await trio.sleep(self.slow)


@asynccontextmanager
async def slow_client(topology: MovingTopology, view: View | None, *, slow: float,
                      slow_resets: int = 1) -> AsyncIterator[SlowSocket]:
    settings = Settings.defaults()  # an outbox of 16, closed after lagging 30 s
    update = LiveUpdate(None, topology.snapshot)
    tree = SupervisorSpec(name="root", strategy=Strategy.ONE_FOR_ONE, children=[
        ActorSpec(name="hub", factory=lambda: StillHub(update)),
        dynamic_supervisor("clients", max_children=4),
    ])
    async with open_actor_system(tree) as system:
        link = ClientLink(settings.websocket.buffer_size)
        counters = LiveCounters()
        ref = await system.lookup("/root/clients").start_child(
            client_spec("ws-1", link, HUB, view, settings, counters))
        with trio.fail_after(5):  # connected: its first view is queued
            while link.queued == 0:
                await trio.sleep(0.001)
        yield SlowSocket(link, ref, counters, slow, slow_resets)


async def move(topology: MovingTopology, socket: SlowSocket, seconds: float) -> None:
    """``seconds`` of topology updates, told to the client as the hub would."""
    for _ in range(int(seconds * RATE)):
        socket.ref.tell(topology.next())
        await trio.sleep(1 / RATE)


def applied(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """What a client holds after ``frames``: each diff follows the version it holds."""
    state: dict[str, Any] | None = None
    for frame in frames:
        payload = frame["payload"]
        if frame["type"] != "topology_update":
            continue
        if payload.get("reset"):
            state = {"nodes": payload["nodes"], "edges": payload["edges"], "version": payload["version"]}
            continue
        assert state is not None and payload["previous_version"] == state["version"]
        for kind in ("nodes", "edges"):
            for key in payload["remove"][kind]:
                state[kind].pop(key, None)
            state[kind].update(payload["add"][kind])
            state[kind].update(payload["update"][kind])
        state["version"] = payload["version"]
    assert state is not None
    return state


def reset_of(snapshot: TopologySnapshot, view: View | None, flt: Filter | None = None) -> dict[str, Any]:
    payload = orjson.loads(str(reset_frame(snapshot, view, flt)))["payload"]
    return {"nodes": payload["nodes"], "edges": payload["edges"], "version": payload["version"]}


@pytest.fixture(params=[False, True], ids=["small view", "large view"])
def large(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the view counts as large: its reset is built by a client, in
    pieces on its address's turn, not kept with the version."""
    if request.param:
        monkeypatch.setattr(trioscope.actors.client, "CACHE_LIMIT", 10)
        monkeypatch.setattr(trioscope.actors.hub, "CACHE_LIMIT", 10)
    return bool(request.param)


async def test_a_slow_reader_of_its_reset_gets_one_reset_then_the_diffs_that_came_meanwhile(autojump_clock, large):
    topology = MovingTopology()
    async with slow_client(topology, View.PROCESSES, slow=10) as socket, trio.open_nursery() as nursery:
        nursery.start_soon(socket.write)
        await move(topology, socket, 20)  # 80 diffs: 40 while it reads its reset
        await trio.sleep(2)
        assert socket.link.close_code is None
        nursery.cancel_scope.cancel()
    assert len(socket.resets) == 1
    assert socket.counters.dropped == 0
    assert applied(socket.frames) == reset_of(topology.snapshot, View.PROCESSES)


async def test_a_slow_reader_of_a_filtered_reset_gets_the_diffs_of_its_filter(autojump_clock):
    topology = MovingTopology()
    async with slow_client(topology, None, slow=10, slow_resets=2) as socket, trio.open_nursery() as nursery:
        nursery.start_soon(socket.write)
        socket.tell({"type": "subscribe", "filter": {"search": "host-2"}})  # a reset of its own, read slowly
        await move(topology, socket, 20)
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    assert len(socket.resets) == 2
    assert socket.counters.dropped == 0
    assert applied(socket.frames) == reset_of(topology.snapshot, None, Filter(search="host-2"))


async def test_a_resync_while_diffs_wait_behind_the_reset_is_answered_by_one_reset_the_diffs_follow(
        autojump_clock):
    topology = MovingTopology()
    async with slow_client(topology, View.PROCESSES, slow=10) as socket, trio.open_nursery() as nursery:
        nursery.start_soon(socket.write)
        await move(topology, socket, 5)
        socket.tell({"type": "resync"})
        await move(topology, socket, 15)  # its second reset is read slowly too
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    assert len(socket.resets) == 2
    assert socket.counters.dropped == 0
    assert applied(socket.frames) == reset_of(topology.snapshot, View.PROCESSES)


async def test_a_client_that_stops_reading_its_reset_is_closed_once_it_lagged_too_long(autojump_clock):
    topology = MovingTopology()
    async with slow_client(topology, View.PROCESSES, slow=float("inf")) as socket, trio.open_nursery() as nursery:
        nursery.start_soon(socket.write)
        await move(topology, socket, 40)
        # Its outbox would have been full after 16 diffs (4 s), and it then lagged for 30 s.
        assert socket.link.close_code == POLICY_VIOLATION
        assert socket.counters.slow_closes == 1
        nursery.cancel_scope.cancel()
    assert len(socket.resets) == 1


async def test_reports_updates_while_it_reads_its_reset_wait_behind_it_as_the_diffs_do(autojump_clock, large):
    """A client of the topology and of every report: the reports' updates that
    come while it reads its reset do not fill its outbox behind it (it was
    reset again for them), and reach it after the reset."""
    topology = MovingTopology()
    async with slow_client(topology, View.PROCESSES, slow=10) as socket, trio.open_nursery() as nursery:
        socket.tell({"type": "subscribe", "topics": ["topology", "reports"]})
        nursery.start_soon(socket.write)
        for n in range(20 * RATE):  # a diff and two reports' updates a quarter second
            socket.ref.tell(topology.next())
            for agent in ("agent-1", "agent-2"):
                socket.ref.tell(ReportUpdate(agent, report_frame(agent, agent, "", {"n": float(n)})))
            await trio.sleep(1 / RATE)
        await trio.sleep(2)
        assert socket.link.close_code is None
        nursery.cancel_scope.cancel()
    assert len(socket.resets) == 1
    assert socket.counters.dropped == 0
    updates = [frame["payload"] for frame in socket.frames if frame["type"] == "report_update"]
    assert [u["summary"]["n"] for u in updates if u["agent_id"] == "agent-1"] == [float(n) for n in range(20 * RATE)]
    assert applied(socket.frames) == reset_of(topology.snapshot, View.PROCESSES)


async def test_a_filter_s_diffs_held_behind_its_reset_weigh_at_most_what_a_reset_does(autojump_clock, monkeypatch):
    """A client of a filter is made diffs of its own while it reads its reset
    slowly: once they would weigh more than that reset (and ``HELD_FLOOR``), it
    is owed a new reset instead of holding more (held, they were bounded only
    by how long it may lag)."""
    monkeypatch.setattr(trioscope.actors.client, "HELD_FLOOR", 0)
    topology = MovingTopology()
    async with slow_client(topology, None, slow=10, slow_resets=2) as socket, trio.open_nursery() as nursery:
        nursery.start_soon(socket.write)
        socket.tell({"type": "subscribe", "filter": {"search": "host"}})  # all of it, as diffs of its own
        await move(topology, socket, 20)  # 80 diffs: 40 while it reads its second reset
        await trio.sleep(2)
        assert socket.link.close_code is None
        nursery.cancel_scope.cancel()
    # The one it connected with, its filter's, and one in place of what came while it read that
    # (and so on: each is read as slowly while the topology moves on):
    assert len(socket.resets) >= 3
    updates = [frame["payload"] for frame in socket.frames if frame["type"] == "topology_update"]
    second, third = [i for i, payload in enumerate(updates) if payload.get("reset") and i > 0][:2]
    assert third == second + 1  # no diff held for it in between
    assert socket.counters.dropped == 0
    assert applied(socket.frames) == reset_of(topology.snapshot, None, Filter(search="host"))
