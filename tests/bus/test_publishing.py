"""A replica does not decode again the reports it published itself, and
reports published at once go over to the asyncio loop together."""

from __future__ import annotations

import time

import nats.errors
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


async def test_reports_published_at_once_cross_to_the_asyncio_loop_together_each_with_its_own_answer() -> None:
    reports = bus()
    reports.progress.connected = True
    crossings: list[list[str]] = []

    async def publish(batch: list) -> list[int | Exception]:  # on the asyncio loop
        crossings.append([outgoing.data.decode() for outgoing in batch])
        return [nats.errors.TimeoutError() if outgoing.data == b"r3" else 100 + i for i, outgoing in enumerate(batch)]

    reports._publish = publish  # type: ignore[method-assign]  # JetStream's part, played here
    answers: dict[str, int | str] = {}

    async def one(name: str) -> None:
        try:
            answers[name] = await reports.publish(f"agent-{name}", name.encode())
        except BusUnavailable:
            answers[name] = "503"

    reports.thread.start()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reports.send_outbox)
            async with trio.open_nursery() as requests:
                for name in ("r1", "r2", "r3", "r4"):
                    requests.start_soon(one, name)
            nursery.cancel_scope.cancel()
    finally:
        reports.thread.stop()
    assert len(crossings) == 1 and sorted(crossings[0]) == ["r1", "r2", "r3", "r4"]
    sequences = {name: 100 + crossings[0].index(name) for name in crossings[0]}
    assert answers == {**sequences, "r3": "503"}


async def test_a_report_still_waiting_when_the_bus_closes_is_refused_not_left_waiting() -> None:
    reports = bus()
    reports.progress.connected = True
    refused: list[str] = []

    async def request() -> None:
        try:
            await reports.publish("agent-1", b"r1")
        except BusUnavailable as exc:
            refused.append(str(exc))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(request)
        await trio.testing.wait_all_tasks_blocked()  # queued; nothing has taken it
        with trio.CancelScope() as closing:
            closing.cancel()
            await reports.send_outbox()  # the bus closes before its sender took the report
    assert refused == ["the bus is closing"]
