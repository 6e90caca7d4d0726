"""An envelope received (by its own say) further ahead of the reading
replica's clock than clocks may differ: no replica with a right clock wrote
it, and a report dated after it would hide its agent's real reports on every
replica until that time (the views keep each agent's newest by its own time).
The feed leaves it out and counts it, as any other bad message."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from tests.synthetic import iso
from trioscope.actors.report_feed import report_feed_spec
from trioscope.actors.roster import HandedOn, ReportsArrived
from trioscope.bus import BusProgress, Fetched, pack_report, unpack_report
from trioscope.bus._envelope import FORMAT, MAX_RECEIVED_AHEAD, BadEnvelope, _Frame
from trioscope.domain.agents import MAX_AHEAD
from trioscope.runtime import Actor, ActorSpec, SupervisorSpec, open_actor_system
from trioscope.wire import decode_report

FIFTY_YEARS = 50 * 365.25 * 86400


def envelope(received_at: float, dated: float, agent: str = "agent-11") -> bytes:
    """An envelope as anyone who can publish to the stream may write it."""
    report = decode_report({"agent_id": agent, "timestamp": iso(dated)})
    _, packed = pack_report(report, received_at, enrolled=False)
    return msgspec.msgpack.encode(_Frame(FORMAT, packed.data, received_at, False))


def test_an_envelope_received_fifty_years_ahead_of_the_readers_clock_is_a_bad_envelope() -> None:
    now = time.time()
    ahead = now + FIFTY_YEARS
    with pytest.raises(BadEnvelope, match=r"received_at: .* ahead of this replica's clock \(at most 300 s"):
        unpack_report(envelope(ahead, ahead), now=now)


@pytest.mark.parametrize("ahead", [0.0, 60.0, MAX_RECEIVED_AHEAD])
def test_an_envelope_received_within_the_allowed_skew_is_read(ahead: float) -> None:
    now = time.time()
    got = unpack_report(envelope(now + ahead, now + ahead + MAX_AHEAD - 1), now=now)
    assert got.received_at == now + ahead


def test_just_past_the_allowed_skew_is_refused_and_without_a_clock_nothing_is_checked() -> None:
    now = time.time()
    late = envelope(now + MAX_RECEIVED_AHEAD + 1, now)
    with pytest.raises(BadEnvelope, match="received_at"):
        unpack_report(late, now=now)
    assert unpack_report(late).received_at == now + MAX_RECEIVED_AHEAD + 1  # no ``now``: only the fixed bounds


def test_a_report_dated_past_its_receive_time_by_more_than_the_edge_allows_is_still_refused() -> None:
    now = time.time()
    with pytest.raises(BadEnvelope, match=r"\$\.timestamp"):
        unpack_report(envelope(now, now + MAX_AHEAD + 60), now=now)


class AheadThenRealBus:
    """A stream with one envelope from 50 years ahead, then a real report of the same agent."""

    def __init__(self) -> None:
        self.progress = BusProgress(connected=True, caught_up=True)
        self.ready = trio.Event()
        self.ready.set()
        self.max_unpacked = 1024**2
        self.reads = 0
        now = time.time()
        self.messages = [Fetched(1, envelope(now + FIFTY_YEARS, now + FIFTY_YEARS)),
                         Fetched(2, envelope(now, now - 1))]

    async def fetch(self, after: int) -> list[Fetched]:
        self.reads += 1
        if self.reads == 1:
            return self.messages
        await trio.sleep_forever()
        raise AssertionError("not reached")

    def published_here(self, data: bytes) -> None:
        return None


class Roster(Actor):
    def __init__(self) -> None:
        self.got: list[Any] = []
        self.handed = trio.Event()

    async def handle(self, message: Any) -> Any:
        assert isinstance(message, ReportsArrived), message
        self.got += message.reports
        self.handed.set()
        return HandedOn(len(message.reports))


async def test_the_feed_leaves_out_and_counts_a_report_received_fifty_years_ahead(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    bus = AheadThenRealBus()
    roster = Roster()
    children = [ActorSpec(name="roster", factory=lambda: roster),
                report_feed_spec(bus, roster_path="/root/roster")]  # type: ignore[arg-type]  # the bus's part the feed uses
    with caplog.at_level(logging.INFO, logger="trioscope.actors.report_feed"):
        async with open_actor_system(SupervisorSpec(name="root", children=children)):
            with trio.fail_after(60):  # the mock clock's seconds
                await roster.handed.wait()
    assert [arrived.sequence for arrived in roster.got] == [2]
    assert bus.progress.skipped == 1 and bus.progress.merged == 2
    (said,) = [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "bus_bad_message"]
    year = datetime.now(UTC).year + 50
    assert said.startswith("message 1 on the report stream is not a report and was left out: invalid received_at: "
                           f"{year}-") and "ahead of this replica's clock" in said, said
