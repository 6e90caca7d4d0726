"""The diffs made for filtered clients alone are made on their address's
turns (``ResetBudget``'s light turns): an address's clients take at most its
share of the server's time for them, whatever their number, another
address's client gets every diff meanwhile, and a client that does not read
is made none. A mock clock; each diff is counted as 10 ms of work (the
work clock advances only when one is made); the tests count diffs made."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import trio

import trioscope.actors.client
from tests.actors.test_client_actor import HUB, StillHub
from tests.actors.test_client_backlog import RATE, MovingTopology, applied, reset_of
from trioscope.actors.client import ClientActor, FromClient, LiveCounters, client_spec
from trioscope.actors.client_link import ClientLink
from trioscope.actors.hub import LiveUpdate
from trioscope.actors.reset_turns import ResetTurns
from trioscope.config import Settings
from trioscope.domain.live import Filter
from trioscope.domain.reset_budget import ResetBudget
from trioscope.domain.topology import View
from trioscope.runtime import ActorSpec, Strategy, SupervisorSpec, dynamic_supervisor, open_actor_system

DIFF_WORK = 0.01
"""Seconds of work each diff made for one client is counted as."""
SHARE = 0.25


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The clients' work clock (``time.thread_time``): each filtered diff made adds ``DIFF_WORK``."""
    clock = [0.0]
    monkeypatch.setattr(trioscope.actors.client, "time", types.SimpleNamespace(thread_time=lambda: clock[0]))
    made = trioscope.actors.client._filtered_diff

    def counted(*args: Any) -> Any:
        clock[0] += DIFF_WORK
        return made(*args)

    monkeypatch.setattr(trioscope.actors.client, "_filtered_diff", counted)
    return clock


@asynccontextmanager
async def clients(topology: MovingTopology, addresses: list[str]) -> AsyncIterator[tuple[list[ClientLink], Any]]:
    settings = Settings.defaults()
    turns = ResetTurns(ResetBudget(share=SHARE, builds=2, bytes_per_address=1024**3, total_bytes=1024**3))
    update = LiveUpdate(None, topology.snapshot)
    tree = SupervisorSpec(name="root", strategy=Strategy.ONE_FOR_ONE, children=[
        ActorSpec(name="hub", factory=lambda: StillHub(update)),
        dynamic_supervisor("clients", max_children=len(addresses)),
    ])
    actors: list[ClientActor] = []
    factory = trioscope.actors.client.ClientActor

    def spying(*args: Any, **kwargs: Any) -> ClientActor:
        actor = factory(*args, **kwargs)
        actors.append(actor)
        return actor

    async with open_actor_system(tree) as system:
        supervisor = system.lookup("/root/clients")
        links, refs = [], []
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(trioscope.actors.client, "ClientActor", spying)
            for index, address in enumerate(addresses):
                link = ClientLink(settings.websocket.buffer_size)
                refs.append(await supervisor.start_child(
                    client_spec(f"ws-{index}", link, HUB, View.PROCESSES, settings, LiveCounters(),
                                address=address, turns=turns)))
                links.append(link)
        with trio.fail_after(5):
            while any(link.queued == 0 for link in links):
                await trio.sleep(0.001)
        for index, ref in enumerate(refs):  # each its own filter: diffs of its own
            ref.tell(FromClient(orjson.dumps({"type": "subscribe", "filter": {"search": f"host-{1 + index % 4}"}})))
        yield links, (refs, actors)


async def read(link: ClientLink, frames: list[dict[str, Any]]) -> None:
    async for frame in link.frames:
        frames.append(orjson.loads(str(frame)))


async def test_an_address_s_filtered_clients_take_at_most_its_share_and_another_address_gets_every_diff(
        autojump_clock: Any, work: list[float]) -> None:
    topology = MovingTopology()
    seconds = 20
    addresses = ["10.0.0.1"] * 20 + ["10.0.0.2"]
    async with clients(topology, addresses) as (links, (refs, actors)), trio.open_nursery() as nursery:
        received: list[list[dict[str, Any]]] = [[] for _ in links]
        for link, frames in zip(links, received, strict=True):
            nursery.start_soon(read, link, frames)
        await trio.sleep(2)  # every client has its filter's reset
        made_before = [actor.diffs_made for actor in actors]
        started = trio.current_time()
        for _ in range(seconds * RATE):
            update = topology.next()
            for ref in refs:
                ref.tell(update)
            await trio.sleep(1 / RATE)
        await trio.sleep(5)
        elapsed = trio.current_time() - started
        made = [actor.diffs_made - before for actor, before in zip(actors, made_before, strict=True)]
        assert [(link.close_code, link.close_reason) for link in links if link.close_code is not None] == []
        nursery.cancel_scope.cancel()
    busy, alone = made[:-1], made[-1]
    # 20 clients would be made 20 * 80 diffs (16 s of work in 20 s): their
    # address is made at most its share's worth. (Work takes no mock time:
    # after ``took`` of it the address waits ``took * (1 / SHARE - 1)``; a
    # turn's batch of slack.)
    allowed = elapsed * SHARE / (1 - SHARE)
    assert sum(busy) * DIFF_WORK <= allowed + 8 * DIFF_WORK
    assert sum(busy) * DIFF_WORK > 0.5 * allowed  # and it does get its share
    # The client of the other address is made every diff, each at once.
    assert alone == seconds * RATE
    alone_frames = received[-1]
    assert sum(1 for f in alone_frames if f["payload"].get("reset")) == 2  # the first view, its filter's
    assert applied(alone_frames) == reset_of(topology.snapshot, View.PROCESSES, Filter(search="host-1"))
    # The busy address's clients start over rather than fall behind; each ends up right.
    for index, frames in enumerate(received[:-1]):
        assert applied(frames) == reset_of(topology.snapshot, View.PROCESSES, Filter(search=f"host-{1 + index % 4}"))


async def test_a_filtered_client_that_does_not_read_is_made_no_diffs(autojump_clock: Any, work: list[float]) -> None:
    topology = MovingTopology()
    async with clients(topology, ["10.0.0.1"]) as (_, (refs, actors)):
        # Its writer never takes a frame: its first view is never sent.
        for _ in range(20 * RATE):
            refs[0].tell(topology.next())
            await trio.sleep(1 / RATE)
        assert actors[0].diffs_made == 0
        assert work[0] == 0.0
        assert actors[0].held_bytes <= max(actors[0].reset_bytes, trioscope.actors.client.HELD_FLOOR)


def test_light_turns_share_the_address_s_time_and_no_build_slot() -> None:
    budget = ResetBudget(share=0.25, builds=1, bytes_per_address=1, total_bytes=1)
    budget.ask("a", "build")
    assert budget.grant(0.0) == ["build"]  # the one build slot is taken
    assert budget.take("b", 0.0)  # a light turn of another address is not held behind it
    assert not budget.take("b", 0.0)  # one at a time
    budget.done("b", 0.0, took=0.1)
    assert not budget.take("b", 0.2)  # its share: 0.1 s of work, then 0.3 s of nothing
    budget.ask("b", "diffs", light=True)
    assert budget.grant(0.2) == []
    assert budget.grant(0.31) == ["diffs"]
    budget.done("b", 0.31, took=0.0)
    budget.ask("a", "diffs-of-a", light=True)
    assert budget.grant(1.0) == []  # its own reset is being built: its diffs wait for it
    budget.done("a", 1.0, took=0.0)
    assert budget.grant(1.0) == ["diffs-of-a"]


def test_an_address_s_diffs_go_before_its_resets_until_they_took_as_long_as_its_last_reset() -> None:
    budget = ResetBudget(share=0.5, builds=2, bytes_per_address=1, total_bytes=1)
    budget.ask("a", "reset-1")
    assert budget.grant(0.0) == ["reset-1"]
    budget.done("a", 0.1, took=0.1)  # the address's next turn from 0.2
    budget.ask("a", "reset-2")
    budget.ask("a", "diffs-1", light=True)
    assert budget.grant(0.2) == ["diffs-1"]  # ahead of the reset that waited longer
    budget.done("a", 0.2, took=0.1)  # its diffs have now taken as long as its last reset
    budget.ask("a", "diffs-2", light=True)
    assert budget.grant(0.35) == ["reset-2"]
    budget.done("a", 0.35, took=0.0)
    assert budget.grant(0.35) == ["diffs-2"]
