"""A report stream that cannot be made or read as such: another stream takes
its subjects, or a stream of its name takes other subjects. The replica says
so, naming the stream, the subjects and what to do, and never that the bus
is unreachable or that it connected."""

from __future__ import annotations

import asyncio
import logging

import nats
import pytest
import trio
from nats.js.api import StreamConfig

from tests.bus.test_client_operations import LOGGER, STREAM, messages, running_bus
from tests.bus_server import OwnNatsServer
from trioscope.bus._client import _covers


@pytest.fixture
def server(own_nats: OwnNatsServer) -> OwnNatsServer:
    return own_nats  # tests/conftest.py


def add_stream(url: str, name: str, subjects: list[str]) -> None:
    async def add() -> None:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            await nc.jetstream().add_stream(StreamConfig(name=name, subjects=subjects))
        finally:
            await nc.close()

    asyncio.run(add())


async def conflict_said(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    def said() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == LOGGER and getattr(r, "event", None) == "bus_stream_unusable"]

    with trio.fail_after(20):
        while not said():
            await trio.sleep(0.05)  # the next look at the condition
    return said()


async def test_subjects_another_stream_takes_are_named_with_that_stream_and_what_to_do(
        server: OwnNatsServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    add_stream(server.url, "everything", [f"{STREAM}.>"])
    async with running_bus(server.url, connected=False) as bus:
        (record, *_) = await conflict_said(caplog)
        assert not bus.ready.is_set()
    text = record.getMessage()
    assert record.levelno == logging.ERROR
    assert f"report stream {STREAM} " in text and f"{STREAM}.>" in text and "the stream everything" in text, text
    assert "bus.stream" in text and "overlap" in text, text
    said = messages(caplog)
    assert not any("cannot reach the bus" in m or "connected to the bus" in m for m in said), said
    assert sum(getattr(r, "event", None) == "bus_stream_unusable" for r in caplog.records) == 1  # said once


async def test_a_stream_of_that_name_with_other_subjects_is_refused_before_it_is_read(
        server: OwnNatsServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    add_stream(server.url, STREAM, ["elsewhere.>"])
    async with running_bus(server.url, connected=False) as bus:
        (record, *_) = await conflict_said(caplog)
        assert not bus.ready.is_set()
    text = record.getMessage()
    assert f"stream {STREAM} with the subjects elsewhere.>, not {STREAM}.>" in text, text
    assert "bus.stream" in text and f"nats stream rm {STREAM}" in text, text
    said = messages(caplog)
    assert not any("cannot reach the bus" in m or "connected to the bus" in m for m in said), said


async def test_a_stream_of_that_name_whose_subjects_take_the_reports_and_more_is_used(
        server: OwnNatsServer) -> None:
    add_stream(server.url, STREAM, ["elsewhere.>", f"{STREAM}.>"])
    async with running_bus(server.url) as bus:
        assert await bus.publish("agent-1", b"one") == 1


@pytest.mark.parametrize(("pattern", "subject", "covers"), [
    ("ops.>", "ops.>", True), (">", "ops.>", True), ("*.>", "ops.>", True),
    ("ops.*", "ops.>", False), ("*", "ops.>", False), ("other.>", "ops.>", False), ("ops", "ops.>", False),
    ("ops.a.>", "ops.>", False),
])
def test_which_subjects_take_the_report_streams(pattern: str, subject: str, covers: bool) -> None:
    assert _covers(pattern, subject) is covers
