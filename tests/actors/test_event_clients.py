"""Users' event sockets (``/ws/user``) under bursts: a client that reads gets
every event of a burst larger than its outbox, in order; one that stops
reading, or that the notifier cannot reach, is closed saying events were lost
(never dropped unsaid). The notifier and event clients in a small tree, a mock
clock; the test reads the outbox as the socket's writer would."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import orjson
import trio

from tests.runtime.scripted import settle
from trioscope.actors.client import FromClient
from trioscope.actors.client_link import POLICY_VIOLATION, ClientLink
from trioscope.actors.notifier import RESTARTED_REASON, NotifierActor, Publish, Watch, event_client_spec, publish
from trioscope.runtime import (
    Actor, ActorRef, ActorSpec, ActorSystem, Kept, Restart, Strategy, SupervisorSpec, dynamic_supervisor,
    open_actor_system,
)

NOTIFIER = "/root/notifier"
TENANT = "acme"


@attrs.define
class Socket:
    link: ClientLink
    received: list[dict[str, Any]] = attrs.field(factory=list)

    async def read(self, count: int, pause: float = 0.0) -> None:
        """What the socket's writer does, until ``count`` frames came: every
        frame, in order (``pause`` per frame)."""
        async for frame in self.link.frames:
            self.received.append(orjson.loads(str(frame)))
            if len(self.received) == count:
                return
            await trio.sleep(pause)


@asynccontextmanager
async def events_tree() -> AsyncIterator[ActorSystem]:
    watchers = Kept(lambda: defaultdict(dict))  # as the server's tree keeps them
    tree = SupervisorSpec(name="root", strategy=Strategy.ONE_FOR_ONE, children=[
        ActorSpec(name="notifier", factory=lambda: NotifierActor(watchers.take()), mailbox_size=65536),
        dynamic_supervisor("clients", max_children=8),
    ])
    async with open_actor_system(tree) as system:
        yield system


async def open_socket(system: ActorSystem, name: str, *, outbox: int = 16, **options: Any) -> Socket:
    link = ClientLink(outbox)
    await system.lookup("/root/clients").start_child(
        event_client_spec(name, link, NOTIFIER, tenant=TENANT, user_id="alice", admin=False, **options))
    # Started: its Watch is in the notifier's mailbox, before any event published from now on.
    return Socket(link)


def burst(system: ActorSystem, count: int, size: int = 0) -> None:
    notifier = system.lookup(NOTIFIER)
    for i in range(count):
        publish(notifier, TENANT, None, {"type": "system_alert", "i": i, "pad": "x" * size})


async def test_a_reading_client_gets_every_event_of_a_burst_larger_than_its_outbox(autojump_clock):
    async with events_tree() as system:
        socket = await open_socket(system, "events-1", outbox=16)
        burst(system, 300)
        with trio.fail_after(10):
            await socket.read(300, 0.001)  # a writer slower than the actors, as Hypercorn is
        assert [m["i"] for m in socket.received] == list(range(300))
        assert not socket.link.closed.is_set()


async def test_a_ping_in_a_burst_is_answered_after_the_events_before_it(autojump_clock):
    async with events_tree() as system:
        socket = await open_socket(system, "events-1", outbox=4)
        client = system.lookup("/root/clients/events-1")
        burst(system, 20)
        await settle()  # the burst is with the client (the outbox full, the rest waiting) before the ping
        client.tell(FromClient('{"type":"ping"}'))
        with trio.fail_after(10):
            await socket.read(21)
        assert [m.get("i", "pong") for m in socket.received] == [*range(20), "pong"]


async def test_a_client_that_stops_reading_is_closed_after_the_slow_client_timeout_saying_events_were_lost(
        autojump_clock):
    async with events_tree() as system:
        socket = await open_socket(system, "events-1", outbox=4, stalled_after=30.0)
        burst(system, 10)
        started = trio.current_time()
        with trio.fail_after(60):
            await socket.link.closed.wait()
        assert 30.0 <= trio.current_time() - started < 31.0
        assert socket.link.close_code == POLICY_VIOLATION
        assert socket.link.close_reason == (
            "too slow: 10 events not delivered; reconnect and read the current state")
        assert len(socket.link.close_reason.encode()) <= 123  # a close frame's reason


async def test_a_slow_reader_is_not_a_stopped_one(autojump_clock):
    async with events_tree() as system:
        socket = await open_socket(system, "events-1", outbox=4, stalled_after=30.0)
        burst(system, 10)
        with trio.fail_after(400):
            await socket.read(10, 20.0)  # a frame every 20 s: 200 s for the burst
        assert [m["i"] for m in socket.received] == list(range(10))
        assert not socket.link.closed.is_set()


async def test_a_client_with_too_much_waiting_is_closed_at_once(autojump_clock):
    async with events_tree() as system:
        socket = await open_socket(system, "events-1", outbox=4)
        burst(system, 5000, size=1024)  # ~5 MiB: past MAX_WAITING_BYTES
        with trio.fail_after(1):
            await socket.link.closed.wait()
        assert socket.link.close_code == POLICY_VIOLATION
        assert socket.link.close_reason.startswith("too slow: ")
        assert "events not delivered" in socket.link.close_reason


class _Stuck(Actor):
    """A client actor that never takes its next message."""

    async def handle(self, message: Any) -> Any:
        await trio.sleep_forever()


async def test_a_client_the_notifier_cannot_reach_is_closed_not_skipped(autojump_clock):
    async with events_tree() as system:
        link = ClientLink(4)
        stuck: ActorRef = await system.lookup("/root/clients").start_child(
            ActorSpec(name="stuck", factory=_Stuck, mailbox_size=2, restart=Restart.TEMPORARY))
        system.lookup(NOTIFIER).tell(Watch(TENANT, stuck, link))
        for i in range(4):  # one taken and stuck on, two queued, the fourth finds the mailbox full
            system.lookup(NOTIFIER).tell(Publish(TENANT, None, {"i": i}))
            await settle()  # handed on (or found the mailbox full) before the next
        with trio.fail_after(1):
            await link.closed.wait()
        assert link.close_code == POLICY_VIOLATION
        assert link.close_reason == "too slow: events not delivered; reconnect and read the current state"


async def test_the_first_frame_and_the_events_after_it_miss_no_change_made_while_the_socket_starts(autojump_clock):
    """``/ws/user``'s ``initial_state``: made once the notifier counts the
    client among its watchers, so a change told while the socket starts is in
    the first frame or among the events after it (made before the watch, the
    changes told in between reached neither)."""
    async with events_tree() as system:
        notifier = system.lookup(NOTIFIER)
        state = {"n": 0}
        link = ClientLink(64)

        def first() -> str:
            return orjson.dumps({"type": "initial_state", "n": state["n"]}).decode()

        async def change(count: int) -> None:
            for _ in range(count):
                state["n"] += 1
                publish(notifier, TENANT, None, {"type": "deployment", "n": state["n"]})
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(change, 20)
            await system.lookup("/root/clients").start_child(
                event_client_spec("events-1", link, NOTIFIER, tenant=TENANT, user_id="alice", admin=False,
                                  first=first))
        socket = Socket(link)
        await settle()
        with trio.fail_after(10):
            await socket.read(1)
        initial = socket.received[0]
        assert initial["type"] == "initial_state"
        assert 0 < initial["n"] < 20  # the socket started while the changes were being told
        with trio.fail_after(10):
            while socket.received[-1].get("n") != 20 or len(socket.received) == 1:
                await socket.read(len(socket.received) + 1)
        told = [m["n"] for m in socket.received[1:]]
        # In order, and every change after the first frame's among them (one
        # told as the frame was made may be in both).
        assert told == sorted(told) and set(range(initial["n"] + 1, 21)) <= set(told)


async def test_the_socket_is_pinged_and_a_client_that_answered_once_must_go_on_answering(autojump_clock):
    """``domain.keepalive``'s rule, as on the live views: without pings a client
    gone without a word held its places until its token expired (nothing is
    sent to a quiet tenant's sockets)."""
    async with events_tree() as system:
        quiet = await open_socket(system, "events-1", ping_interval=5.0)
        answering = await open_socket(system, "events-2", ping_interval=5.0)
        for socket in (quiet, answering):
            with trio.fail_after(6.0):
                await socket.read(1)
            assert socket.received == [{"type": "ping"}]
        system.lookup("/root/clients/events-2").tell(FromClient('{"type":"pong"}'))
        with trio.fail_after(20.0):  # (the mock clock's seconds) two more pings: events-2 answers neither
            await answering.link.closed.wait()
        assert answering.link.close_code == POLICY_VIOLATION
        assert answering.link.close_reason == "no pong to two pings"
        assert not quiet.link.closed.is_set()  # never answered one: not held to it


async def test_a_restarted_notifier_closes_its_sockets_saying_events_may_have_been_lost(autojump_clock):
    """The event it crashed on was told to nobody: a socket left open would be
    silent for good (it watched a notifier that no longer knows it)."""
    async with events_tree() as system:
        socket = await open_socket(system, "events-1")
        burst(system, 1)
        with trio.fail_after(10):
            await socket.read(1)
        system.lookup(NOTIFIER).tell(Publish(TENANT, None, {"type": "system_alert", "unencodable": {1, 2}}))
        with trio.fail_after(10):
            await socket.link.closed.wait()
        assert (socket.link.close_code, socket.link.close_reason) == (POLICY_VIOLATION, RESTARTED_REASON)
        other = await open_socket(system, "events-2")  # the restarted notifier serves new sockets
        burst(system, 1)
        with trio.fail_after(10):
            await other.read(1)
