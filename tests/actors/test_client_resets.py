"""The resets of many clients: those of a large view without a filter share one
frame per version, the clients of one address build theirs one at a time
(another address's client is not held behind them), and the resets not yet
read by an address's clients stay within its room. A still hub and a mock
clock; the tests read the outboxes as the sockets' writers would."""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import orjson
import pytest
import trio
import trio.testing

import trioscope.actors.client
import trioscope.actors.hub
from tests.actors.test_client_actor import HUB, StillHub, snapshot_of
from trioscope.actors.client import FromClient, LiveCounters, client_spec
from trioscope.actors.client_link import GOING_AWAY, ClientLink
from trioscope.actors.reset_turns import ResetTurns
from trioscope.actors.hub import LiveUpdate
from trioscope.config import Settings
from trioscope.domain.live import Filter, Frame
from trioscope.domain.reset_budget import ResetBudget
from trioscope.domain.topology import TopologySnapshot, View
from trioscope.runtime import ActorRef, ActorSpec, Strategy, SupervisorSpec, dynamic_supervisor, open_actor_system

GIB = 1024**3


@attrs.define(eq=False)
class Socket:
    """One client's socket as its writer sees it: the frames it took, the
    last one perhaps never finished (a client that stopped reading)."""

    name: str
    link: ClientLink
    ref: ActorRef
    taken: list[str]
    """The names of the sockets that took a reset, in the order they did (shared by all)."""
    frames: list[Frame] = attrs.field(factory=list)

    def tell(self, message: dict[str, Any]) -> None:
        self.ref.tell(FromClient(orjson.dumps(message).decode()))

    @property
    def resets(self) -> list[Frame]:
        return [frame for frame in self.frames if '"reset":true' in str(frame)]

    async def write(self, stop_after_resets: int | None = None) -> None:
        """Take frames as fast as they come; with ``stop_after_resets``, stop
        once that many resets were taken, the last one's send never ending."""
        async for frame in self.link.frames:
            self.frames.append(frame)
            if '"reset":true' in str(frame):
                self.taken.append(self.name)
            if stop_after_resets is not None and len(self.resets) >= stop_after_resets:
                await trio.sleep_forever()

    async def leave(self, clients: Any) -> None:
        """What the socket's handler does once the socket has ended."""
        self.link.close(GOING_AWAY, "gone")
        self.link.handler_ended()
        await clients.stop_child(self.name)


@asynccontextmanager
async def sockets(snapshot: TopologySnapshot, addresses: list[str], view: View | None = None, *,
                  turns: ResetTurns | None = None) -> AsyncIterator[tuple[list[Socket], Any]]:
    """A client per address in ``addresses`` (connected: its first view is
    queued), sharing ``turns`` if given; and the clients' supervisor."""
    settings = Settings.defaults()
    update = LiveUpdate(None, snapshot)
    tree = SupervisorSpec(name="root", strategy=Strategy.ONE_FOR_ONE, children=[
        ActorSpec(name="hub", factory=lambda: StillHub(update)),
        dynamic_supervisor("clients", max_children=len(addresses)),
    ])
    async with open_actor_system(tree) as system:
        clients = system.lookup("/root/clients")
        opened: list[Socket] = []
        taken: list[str] = []
        for index, address in enumerate(addresses):
            link = ClientLink(16)
            name = f"ws-{index}"
            extra: dict[str, Any] = {"address": address, "turns": turns} if turns is not None else {}
            ref = await clients.start_child(client_spec(name, link, HUB, view, settings, LiveCounters(), **extra))
            opened.append(Socket(name, link, ref, taken))
        with trio.fail_after(5):
            while any(socket.link.queued == 0 for socket in opened):
                await trio.sleep(0.001)
        yield opened, clients


def turns_of(*, share: float = 1.0, per_address: int = GIB, total: int = GIB) -> ResetTurns:
    return ResetTurns(ResetBudget(share=share, builds=2, bytes_per_address=per_address, total_bytes=total))


@pytest.fixture
def small_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Views of more than 100 nodes and edges count as large (as 25,000 do):
    their resets are not kept with the version."""
    monkeypatch.setattr(trioscope.actors.client, "CACHE_LIMIT", 100)
    monkeypatch.setattr(trioscope.actors.hub, "CACHE_LIMIT", 100)


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many resets clients have built (started), as one count."""
    count = [0]
    chunks = trioscope.actors.client.reset_chunks

    def counting(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        count[0] += 1
        return chunks(*args, **kwargs)

    monkeypatch.setattr(trioscope.actors.client, "reset_chunks", counting)
    return count


async def test_clients_of_a_large_view_without_a_filter_share_one_reset_while_they_hold_it(
        autojump_clock, small_cache, builds):
    snapshot = snapshot_of(20)  # 200 processes: a large view here
    assert snapshot.size(View.PROCESSES) > 100
    async with sockets(snapshot, ["10.0.0.1"] * 10 + ["10.0.0.2"] * 10, View.PROCESSES) as (opened, clients):
        async with trio.open_nursery() as nursery:
            for socket in opened:  # none of them finishes reading it
                nursery.start_soon(socket.write, 1)
            with trio.fail_after(5):
                while any(not socket.resets for socket in opened):
                    await trio.sleep(0.001)
            first = opened[0].resets[0]
            assert all(socket.resets[0] is first for socket in opened)
            assert builds[0] == 1
            held = weakref.ref(first)
            del first
            for socket in opened:
                await socket.leave(clients)
                socket.frames.clear()
            nursery.cancel_scope.cancel()
        gc.collect()
        assert held() is None  # gone with the last client that held it, not kept with the version


async def test_an_address_builds_its_resets_one_at_a_time_and_another_address_is_not_held_behind(
        autojump_clock, monkeypatch):
    snapshot = snapshot_of(30, processes=100)  # ~3,000 nodes: a filtered reset in several pieces
    nodes = sum(1 for _ in snapshot.nodes())
    turns = turns_of()
    async with sockets(snapshot, ["10.0.0.1"] * 20 + ["10.0.0.2"], turns=turns) as (opened, _):
        *many, other = opened
        looked = [0]
        matches = Filter.matches

        def counting(self: Filter, node: Any) -> bool:
            looked[0] += 1
            if looked[0] == 2 * nodes:  # two resets' work done: the other address asks now
                other.tell({"type": "subscribe", "filter": {"search": "svc"}})
            return matches(self, node)

        monkeypatch.setattr(Filter, "matches", counting)
        async with trio.open_nursery() as nursery:
            for socket in opened:
                nursery.start_soon(socket.write)
            for index, socket in enumerate(many):
                socket.tell({"type": "subscribe", "filter": {"search": f"host-{index}-"}})
            with trio.fail_after(30):
                while len(opened[0].taken) < 2 * len(opened):
                    await trio.sleep(0.001)
            nursery.cancel_scope.cancel()
        taken = opened[0].taken
        second_resets = [name for at, name in enumerate(taken) if taken[:at + 1].count(name) == 2]
        # One build at a time for the 20 of one address: the other's was built
        # beside their third (the server builds two at once), not after all of them.
        assert second_resets.index(other.name) <= 3


async def test_the_resets_an_address_has_not_read_stay_within_its_room_and_the_next_follows_once_read(
        autojump_clock):
    snapshot = snapshot_of(10)
    turns = turns_of(per_address=1)  # one reset at a time, whatever its size
    async with sockets(snapshot, ["10.0.0.1"] * 5 + ["10.0.0.2"], turns=turns) as (opened, clients):
        *many, other = opened
        async with trio.open_nursery() as nursery:
            for socket in opened:  # each reads its first view, then stops in its next reset
                nursery.start_soon(socket.write, 2)
            for socket in opened:  # a filter: a reset of its own
                socket.tell({"type": "subscribe", "filter": {"search": "host"}})
            with trio.fail_after(5):
                while len(other.resets) < 2 or not any(len(socket.resets) == 2 for socket in many):
                    await trio.sleep(0.001)
            await trio.testing.wait_all_tasks_blocked()
            holding = [socket for socket in many if len(socket.resets) == 2]
            assert len(holding) == 1
            assert turns.budget.holds("10.0.0.1") > 0
            # Its client goes (the server's write timeout, say): the next one's reset follows.
            await holding[0].leave(clients)
            with trio.fail_after(5):
                while sum(len(socket.resets) == 2 for socket in many) < 2:
                    await trio.sleep(0.001)
            await trio.testing.wait_all_tasks_blocked()
            assert sum(len(socket.resets) == 2 for socket in many) == 2
            for socket in opened:
                if socket is not holding[0]:
                    await socket.leave(clients)
            nursery.cancel_scope.cancel()
    assert turns.budget.held_bytes == 0 and turns.budget.building == 0  # nothing left counted


def test_a_closed_clients_reset_counts_against_its_address_until_its_handler_has_let_go() -> None:
    """Closed, a socket may still be writing the reset (a write waits up to the
    write timeout): its bytes are held until the handler ends, not freed at the close."""
    link = ClientLink(4)
    released: list[int] = []
    link.hold_until_sent(1, lambda: released.append(1))
    link.close(GOING_AWAY, "lagging")
    assert released == []
    link.handler_ended()
    assert released == [1]
    link.hold_until_sent(2, lambda: released.append(2))  # after the end: at once
    assert released == [1, 2]


async def test_a_small_views_reset_is_never_kept_waiting_by_what_other_addresses_hold(autojump_clock):
    """A small view's reset is kept with its version, whoever is sent it: a few
    addresses holding large resets unread (the whole room of the server) must
    not keep another address's view of it waiting."""
    turns = turns_of(per_address=1, total=1)
    async with sockets(snapshot_of(10), ["10.0.0.1", "10.0.0.2"], turns=turns) as (opened, clients):
        holder, other = opened
        async with trio.open_nursery() as nursery:
            nursery.start_soon(holder.write, 2)  # its first view, then a reset it never finishes reading
            nursery.start_soon(other.write)
            holder.tell({"type": "subscribe", "filter": {"search": "host"}})  # a reset of its own
            with trio.fail_after(5):
                while len(holder.resets) < 2:
                    await trio.sleep(0.001)
            await trio.testing.wait_all_tasks_blocked()
            assert turns.budget.held_bytes >= turns.budget.total_bytes  # the server's whole room
            other.tell({"type": "resync"})
            with trio.fail_after(5):
                while len(other.resets) < 2:
                    await trio.sleep(0.001)
            for socket in opened:
                await socket.leave(clients)
            nursery.cancel_scope.cancel()
    assert turns.budget.held_bytes == 0
