"""A running replica that reads again a stream made again (from its start:
sequences at or below the last one merged) has the agents stale by then
removed once it read it to its end, as a starting replica has after its
replay (``HistoryReplayed``); reading on, it does not."""

from __future__ import annotations

import time
from typing import Any

import trio
import trio.testing

from tests.bus.test_envelope_ahead import envelope
from trioscope.actors.report_feed import report_feed_spec
from trioscope.actors.roster import HandedOn, HistoryReplayed, ReportsArrived
from trioscope.bus import BusProgress, Fetched
from trioscope.runtime import Actor, ActorSpec, SupervisorSpec, open_actor_system


class ScriptedBus:
    """A bus whose reads hand out ``reads`` in turn, then nothing."""

    def __init__(self, merged: int, reads: list[list[Fetched]]) -> None:
        self.progress = BusProgress(connected=True, caught_up=True)
        self.progress.handed_on(merged)
        self.ready = trio.Event()
        self.ready.set()
        self.max_unpacked = 1024**2
        self.reads = reads
        self.all_read = trio.Event()

    async def fetch(self, after: int) -> list[Fetched]:
        if self.reads:
            taken = self.reads.pop(0)
            self.progress.pending = sum(map(len, self.reads))  # as the reader says: what is behind them
            return taken
        self.progress.pending = 0
        self.all_read.set()
        await trio.sleep_forever()
        raise AssertionError("not reached")

    def published_here(self, data: bytes) -> None:
        return None


class Roster(Actor):
    def __init__(self) -> None:
        self.said: list[str] = []

    async def handle(self, message: Any) -> Any:
        if isinstance(message, ReportsArrived):
            self.said.append(",".join(str(arrived.sequence) for arrived in message.reports))
            return HandedOn(len(message.reports))
        assert isinstance(message, HistoryReplayed), message
        self.said.append("expired")
        return True


def reports(*sequences: int) -> list[Fetched]:
    now = time.time()
    return [Fetched(sequence, envelope(now - 3600, now - 3600, agent=f"agent-{sequence}")) for sequence in sequences]


async def run(bus: ScriptedBus) -> list[str]:
    roster = Roster()
    children = [ActorSpec(name="roster", factory=lambda: roster),
                report_feed_spec(bus, roster_path="/root/roster")]  # type: ignore[arg-type]  # the bus's part the feed uses
    async with open_actor_system(SupervisorSpec(name="root", children=children)):
        with trio.fail_after(60):  # the mock clock's seconds
            await bus.all_read.wait()
    return roster.said


async def test_a_stream_made_again_and_read_again_to_its_end_has_the_stale_agents_removed(
        autojump_clock: trio.testing.MockClock) -> None:
    bus = ScriptedBus(191, [reports(192), reports(1, 2), reports(3)])
    said = await run(bus)
    assert said == ["192", "1,2", "3", "expired"]  # once read to its end again, not before
    assert bus.progress.merged == 3


async def test_a_running_replica_reading_on_removes_nothing_itself(autojump_clock: trio.testing.MockClock) -> None:
    bus = ScriptedBus(191, [reports(192, 193), reports(194)])
    assert await run(bus) == ["192,193", "194"]
