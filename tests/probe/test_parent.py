"""``--exit-with-parent``: the probe stops at end of file on the pipe its parent
holds, not before, whatever the parent wrote; an unreadable stdin stops it too."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from trioscope_probe._parent import read_in_thread, read_in_trio, stop_when_parent_gone

Reader = Callable[[int], Awaitable[None]]


@pytest.mark.parametrize("reader", [read_in_trio, read_in_thread], ids=["trio", "thread"])
async def test_reading_ends_at_end_of_file_only(reader: Reader) -> None:
    read_end, write_end = os.pipe()
    done = trio.Event()

    async def watch() -> None:
        await reader(read_end)
        done.set()

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                os.write(write_end, b"still here")
                await trio.testing.wait_all_tasks_blocked()
                assert not done.is_set()
                os.close(write_end)
                write_end = -1
                await done.wait()
    finally:
        os.close(read_end)
        if write_end != -1:
            os.close(write_end)


async def test_the_parent_gone_cancels_the_probe_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "trioscope_probe")
    read_end, write_end = os.pipe()
    try:
        with trio.fail_after(10), trio.CancelScope() as probe:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop_when_parent_gone, probe, read_end)
                os.close(write_end)
                await trio.sleep_forever()  # the probe's work, until cancelled
    finally:
        os.close(read_end)
    assert probe.cancelled_caught
    lines = [r.getMessage() for r in caplog.records if r.name == "trioscope_probe"]
    assert lines == ["parent process gone (end of file on stdin): stopping"]


async def test_an_unreadable_stdin_counts_as_the_parent_gone(caplog: pytest.LogCaptureFixture) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(write_end)
    caplog.set_level(logging.INFO, "trioscope_probe")
    with trio.fail_after(10), trio.CancelScope() as probe:
        await stop_when_parent_gone(probe, read_end)  # a closed descriptor, like a closed stdin
        await trio.sleep_forever()
    assert probe.cancelled_caught
    assert any(r.getMessage().startswith("parent process gone (stdin unreadable") for r in caplog.records)
