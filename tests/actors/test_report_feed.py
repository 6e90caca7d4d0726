"""The report feed: reports read from the stream go to the roster in order; a
feed that took only a few lets more gather before it takes again."""

from __future__ import annotations

import time
from typing import Any

import trio
import trio.testing

from tests.synthetic import host_report
from trioscope.actors import report_feed
from trioscope.actors.report_feed import report_feed_spec
from trioscope.actors.roster import HandedOn, ReportsArrived
from trioscope.bus import pack_report
from trioscope.bus._envelope import Envelope
from trioscope.bus._lag import BusProgress
from trioscope.bus._reader import Fetched
from trioscope.runtime import Actor, ActorSpec, SupervisorSpec, open_actor_system
from trioscope.wire import decode_report


class FakeBus:
    """Hands out ``batches`` one per fetch (then nothing more), every report one
    this process published, so found decoded (``published_here``)."""

    def __init__(self, sizes: list[int]) -> None:
        self.progress = BusProgress(connected=True, caught_up=True)
        self.ready = trio.Event()
        self.ready.set()
        report = decode_report(host_report(1, timestamp=time.time()))
        data, packed = pack_report(report, 5.0, enrolled=False)
        self.envelope = Envelope(report, 5.0, False, packed)
        sequence = iter(range(1, 1000))
        self.batches = [[Fetched(next(sequence), data) for _ in range(size)] for size in sizes]
        self.fetched_at: list[float] = []
        self.all_taken = trio.Event()

    async def fetch(self, after: int) -> list[Fetched]:
        self.fetched_at.append(trio.current_time())
        if not self.batches:
            self.all_taken.set()
            await trio.sleep_forever()
        return self.batches.pop(0)

    def published_here(self, data: bytes) -> Envelope:
        return self.envelope


class Roster(Actor):
    def __init__(self) -> None:
        self.sequences: list[int] = []

    async def handle(self, message: Any) -> Any:
        assert isinstance(message, ReportsArrived)
        self.sequences += [arrived.sequence for arrived in message.reports]
        return HandedOn(len(message.reports))


async def test_after_a_few_reports_the_feed_lets_more_gather_and_after_many_it_reads_on_at_once(
        autojump_clock: trio.testing.MockClock) -> None:
    few, many = 1, report_feed.FEW
    bus = FakeBus([few, few, many, few])
    roster = Roster()
    children = [ActorSpec(name="roster", factory=lambda: roster),
                report_feed_spec(bus, roster_path="/root/roster")]  # type: ignore[arg-type]  # the bus's part the feed uses
    async with open_actor_system(SupervisorSpec(name="root", children=children)):
        with trio.fail_after(60):  # the mock clock's seconds: the gaps are milliseconds
            await bus.all_taken.wait()
    gaps = [round(later - earlier, 6) for earlier, later in zip(bus.fetched_at, bus.fetched_at[1:])]
    gather = report_feed.GATHER
    assert gaps == [gather, gather, 0.0, gather]
    assert roster.sequences == list(range(1, 2 * few + many + few + 1))
    assert bus.progress.merged == roster.sequences[-1]
