"""A replica does not decode again the reports it published itself."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing

from tests.synthetic import host_report
from trioscope.bus import AsyncioThread, BusUnavailable, ReportBus, pack_report
from trioscope.wire import decode_report


def bus() -> ReportBus:
    return ReportBus("nats://127.0.0.1:1", "unused", 60.0, AsyncioThread())


async def test_a_report_that_comes_back_before_its_acknowledgement_is_found_decoded() -> None:
    """With the stream read ahead, the feed often reads a report before its publisher has the sequence."""
    reports = bus()
    report = decode_report(host_report(1, timestamp=time.time()))
    data, packed = pack_report(report, 5.0, enrolled=False)
    acknowledged = trio.Event()

    async def publish(agent_id: str, sent: bytes) -> int:
        await acknowledged.wait()
        return 1

    reports.publish = publish  # type: ignore[method-assign]  # the acknowledgement comes when the test says
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reports.publish_report, report, 5.0, False, data, packed)
        await trio.testing.wait_all_tasks_blocked()
        found = reports.published_here(bytes(data))  # the feed's copy, read from the stream
        acknowledged.set()
    assert found is not None and found.report is report and found.packed is packed
    assert reports.published_here(data) is None  # once


async def test_a_report_the_bus_did_not_take_is_not_kept() -> None:
    reports = bus()
    report = decode_report(host_report(1, timestamp=time.time()))
    data, packed = pack_report(report, 5.0, enrolled=False)

    async def publish(agent_id: str, sent: bytes) -> int:
        raise BusUnavailable("not connected to the bus")

    reports.publish = publish  # type: ignore[method-assign]
    with pytest.raises(BusUnavailable):
        await reports.publish_report(report, 5.0, False, data, packed)
    assert reports.published_here(data) is None
