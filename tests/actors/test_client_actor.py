"""The per-client live actor under clients that ask for resets: resyncs and new
filters are paced, never built while the client cannot take them, and stop when
the client leaves. A still hub and a mock clock; the test reads the outbox as
the socket's writer would."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import orjson
import pytest
import trio

from tests.synthetic import host_report
from trioscope.actors.client import FromClient, LiveCounters, client_spec
from trioscope.actors.client_link import GOING_AWAY, ClientLink
from trioscope.actors.hub import Join, LiveUpdate, WantReports
from trioscope.config import Settings
from trioscope.domain.live import Filter
from trioscope.domain.topology import TopologyGraph, TopologySnapshot
from trioscope.runtime import (
    Actor, ActorRef, ActorSpec, Strategy, SupervisorRef, SupervisorSpec, dynamic_supervisor, open_actor_system,
)
from trioscope.wire import decode_report

T0 = time.time()
HUB = "/root/hub"
RESYNC = FromClient('{"type":"resync"}')


def snapshot_of(hosts: int, processes: int = 10) -> TopologySnapshot:
    graph = TopologyGraph(T0)
    for index in range(1, hosts + 1):
        graph.apply(decode_report(host_report(index, timestamp=T0, containers=2, processes=processes,
                                              connections=0)), T0)
    snapshot, _ = graph.publish(T0)
    return snapshot


SMALL = snapshot_of(3)


class StillHub(Actor):
    """A hub whose topology never changes: every joiner starts from ``update``."""

    def __init__(self, update: LiveUpdate) -> None:
        self.update = update

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Join):
            message.client.tell(self.update)
            return None
        if isinstance(message, WantReports):
            return None  # the test tells the client the reports' updates itself
        return await super().handle(message)


@attrs.define
class Client:
    link: ClientLink
    ref: ActorRef
    counters: LiveCounters
    supervisor: SupervisorRef
    received: list[tuple[float, dict[str, Any]]] = attrs.field(factory=list)
    """(mock time, message) of everything the writer took, in order."""

    def tell(self, message: dict[str, Any]) -> None:
        self.ref.tell(FromClient(orjson.dumps(message).decode()))

    def resets(self, after: float = float("-inf")) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.received if m["payload"].get("reset") and t > after]

    async def read(self) -> None:
        """What the socket's writer does, as fast as frames come."""
        async for frame in self.link.frames:
            self.received.append((trio.current_time(), orjson.loads(str(frame))))


@asynccontextmanager
async def live_client(snapshot: TopologySnapshot = SMALL, *, buffer: int = 16,
                      interval: float = 1.0) -> AsyncIterator[Client]:
    defaults = Settings.defaults()
    settings = attrs.evolve(defaults, websocket=attrs.evolve(
        defaults.websocket, buffer_size=buffer, resync_interval=interval))
    update = LiveUpdate(None, snapshot)
    tree = SupervisorSpec(name="root", strategy=Strategy.ONE_FOR_ONE, children=[
        ActorSpec(name="hub", factory=lambda: StillHub(update)),
        dynamic_supervisor("clients", max_children=4),
    ])
    async with open_actor_system(tree) as system:
        link = ClientLink(buffer)
        counters = LiveCounters()
        clients = system.lookup("/root/clients")
        ref = await clients.start_child(client_spec("ws-1", link, HUB, None, settings, counters))
        with trio.fail_after(5):  # connected: the hub told it where to start, and its first view is queued
            while link.queued == 0:
                await trio.sleep(0.001)
        yield Client(link, ref, counters, clients)


@pytest.fixture
def looked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many nodes filters have looked at: the work of building filtered resets."""
    count = [0]
    matches = Filter.matches

    def counting(self: Filter, node: Any) -> bool:
        count[0] += 1
        return matches(self, node)

    monkeypatch.setattr(Filter, "matches", counting)
    return count


async def test_a_flood_of_resyncs_gets_one_reset_per_interval_and_one_after_it(autojump_clock):
    async with live_client() as client, trio.open_nursery() as nursery:
        nursery.start_soon(client.read)
        client.tell({"type": "subscribe", "filter": {"search": "host-2"}})
        await trio.sleep(0.001)
        subscribed = trio.current_time()
        # Answered at once: the reset a client connects with starts no interval.
        assert [("host:host-1" in m["payload"]["nodes"]) for _, m in client.resets()] == [True, False]
        for _ in range(1000):  # 200 a second for 5 seconds
            client.ref.tell(RESYNC)
            last_asked = trio.current_time()
            await trio.sleep(0.005)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    times = [t for t, _ in client.resets(after=subscribed - 0.001)]
    # (mock times are floats: 2.001 - 1.001 is a hair under 1)
    assert all(later - earlier >= 1.0 - 1e-9 for earlier, later in itertools.pairwise(times))
    assert len(times) <= 1 + 5 + 1
    # The last requests are not dropped: exactly one reset answers them.
    assert len([t for t in times if t > last_asked]) == 1
    assert all("host:host-2" in m["payload"]["nodes"] and "host:host-1" not in m["payload"]["nodes"]
               for _, m in client.resets(after=subscribed - 0.001))


async def test_unsubscribing_from_a_node_changes_the_filter_and_sends_a_reset_by_the_new_one(autojump_clock):
    async with live_client() as client, trio.open_nursery() as nursery:
        nursery.start_soon(client.read)
        client.tell({"type": "subscribe", "topics": ["node:host:host-2"]})
        await trio.sleep(0.001)
        assert [set(m["payload"]["nodes"]) >= {"host:host-1"} for _, m in client.resets()] == [True, False]
        client.tell({"type": "unsubscribe", "topics": ["node:host:host-2"]})
        await trio.sleep(2)  # past the resync interval (mock clock)
        nursery.cancel_scope.cancel()
    last = client.resets()[-1][1]["payload"]["nodes"]
    assert len(client.resets()) == 3 and {"host:host-1", "host:host-2", "host:host-3"} <= set(last)


async def test_no_reset_is_built_while_the_outbox_is_full_and_one_once_it_drains(autojump_clock, looked):
    async with live_client(buffer=4) as client:
        for _ in range(3):
            client.tell({"type": "ping"})
        await trio.sleep(0.001)
        assert client.link.queued == 4  # the reset it connected with and three pongs: nobody reads
        before = looked[0]
        for index in range(600):  # 20 seconds of resyncs and new filters
            if index % 50 == 0:
                client.tell({"type": "subscribe", "filter": {"search": f"host-{1 + index // 50 % 3}"}})
            else:
                client.ref.tell(RESYNC)
            await trio.sleep(1 / 30)
        assert looked[0] == before
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.read)
            await trio.sleep(5)
            nursery.cancel_scope.cancel()
    resets = client.resets()
    # The one it connected with, and one once it drained: the newest filter's
    # (index 550 asked for host-3).
    assert len(resets) == 2
    assert "host:host-3" in resets[-1][1]["payload"]["nodes"]
    assert "host:host-2" not in resets[-1][1]["payload"]["nodes"]


async def test_a_lagging_client_is_sent_one_reset_once_it_drains(autojump_clock):
    async with live_client(buffer=2) as client:
        for _ in range(10):  # pongs it does not read: it falls behind
            client.tell({"type": "ping"})
        await trio.sleep(0.001)
        assert client.counters.dropped > 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.read)
            await trio.sleep(3)
            nursery.cancel_scope.cancel()
    assert len(client.resets()) == 2  # the one it connected with, and one after catching up


async def test_a_client_that_leaves_stops_its_reset_and_its_queued_messages(autojump_clock, looked):
    snapshot = snapshot_of(60, processes=100)  # ~6,000 nodes: a filtered reset in several pieces
    nodes = sum(1 for _ in snapshot.nodes())
    async with live_client(snapshot, interval=0.0) as client, trio.open_nursery() as nursery:
        nursery.start_soon(client.read)
        await trio.sleep(0.001)

        async def leave_once_started() -> None:
            while looked[0] == 0:
                await trio.lowlevel.checkpoint()
            # What the socket handler does once the socket has ended.
            client.link.close(GOING_AWAY, "gone")
            await client.supervisor.stop_child("ws-1")

        nursery.start_soon(leave_once_started)
        client.tell({"type": "subscribe", "filter": {"search": "host-7"}})
        for _ in range(100):  # queued behind it when the client leaves; each due at once
            client.ref.tell(RESYNC)
        await client.ref.wait_stopped()
        nursery.cancel_scope.cancel()
    assert 0 < looked[0] < nodes
    assert len(client.resets()) == 1  # the one it connected with


async def test_the_first_view_waits_for_the_time_it_was_admitted_for_and_is_reported_once_sent(autojump_clock):
    settings = Settings.defaults()
    update = LiveUpdate(None, SMALL)
    tree = SupervisorSpec(name="root", strategy=Strategy.ONE_FOR_ONE, children=[
        ActorSpec(name="hub", factory=lambda: StillHub(update)),
        dynamic_supervisor("clients", max_children=4),
    ])
    sent: list[float] = []
    async with open_actor_system(tree) as system:
        link = ClientLink(16, on_first_view=lambda: sent.append(trio.current_time()))
        admitted_for = trio.current_time() + 5
        await system.lookup("/root/clients").start_child(
            client_spec("ws-1", link, HUB, None, settings, LiveCounters(), first_view_at=admitted_for))
        client = Client(link, system.lookup("/root/clients/ws-1"), LiveCounters(), system.lookup("/root/clients"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.read)
            await trio.sleep(4.9)
            assert client.received == [] and sent == []
            await trio.sleep(5)
            link.first_view_done()  # the socket ends: already reported, not again
            nursery.cancel_scope.cancel()
    [(at, first)] = client.resets()
    assert at >= admitted_for and first["payload"]["version"] == SMALL.version
    assert len(sent) == 1 and sent[0] >= at

