"""What the report feed says about the stream it reads: where it reads again
from after the bus was away (a stream made again meanwhile is read from its
start, not from after the last report merged), and what a message that is no
report envelope is not."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from trioscope.actors.report_feed import report_feed_spec
from trioscope.bus import BusProgress, BusUnavailable, Fetched
from trioscope.runtime import Actor, ActorSpec, SupervisorSpec, open_actor_system

RANDOM = b"\x81\xa3key\x01"
"""Bytes that are no envelope (a msgpack map of the wrong keys)."""


class RemadeStreamBus:
    """A bus whose first read fails (the bus away), after which the stream
    was made again: its first message is read, sequence 1, though 191 had
    been merged here. Then nothing more."""

    def __init__(self) -> None:
        self.progress = BusProgress(connected=True, caught_up=True)
        self.progress.handed_on(191)
        self.ready = trio.Event()
        self.ready.set()
        self.max_unpacked = 1024**2
        self.reads = 0
        self.all_read = trio.Event()

    async def fetch(self, after: int) -> list[Fetched]:
        self.reads += 1
        if self.reads == 1:
            raise BusUnavailable("the bus is away")
        if self.reads == 2:
            return [Fetched(1, RANDOM)]
        self.all_read.set()
        await trio.sleep_forever()
        raise AssertionError("not reached")

    def published_here(self, data: bytes) -> None:
        return None


class Roster(Actor):
    async def handle(self, message: Any) -> Any:
        raise AssertionError(f"no report to hand on, got {message!r}")


async def test_the_feed_says_it_reads_again_from_the_first_report_it_read_and_what_random_bytes_are_not(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    bus = RemadeStreamBus()
    children = [ActorSpec(name="roster", factory=Roster),
                report_feed_spec(bus, roster_path="/root/roster")]  # type: ignore[arg-type]  # the bus's part the feed uses
    with caplog.at_level(logging.INFO, logger="trioscope.actors.report_feed"):
        async with open_actor_system(SupervisorSpec(name="root", children=children)):
            with trio.fail_after(60):  # the mock clock's seconds
                await bus.all_read.wait()
    said = {getattr(r, "event", None): r.getMessage() for r in caplog.records}
    assert said["bus_read_resumed"] == "reading the report stream again from sequence 1"
    assert said["bus_bad_message"].startswith("message 1 on the report stream is not a report and was left out: "
                                              "not a report envelope: "), said["bus_bad_message"]
    assert bus.progress.skipped == 1 and bus.progress.merged == 1
