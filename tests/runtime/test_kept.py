"""State an actor keeps across a restart, but not across a crash loop."""

from __future__ import annotations

import logging

import pytest

from trioscope.runtime import Kept


def test_a_restart_takes_the_state_and_a_crash_soon_after_that_starts_afresh(caplog: pytest.LogCaptureFixture):
    now = [0.0]
    made: list[list[int]] = []

    def make() -> list[int]:
        made.append([])
        return made[-1]

    kept = Kept(make, "/root/thing", settle=30.0, clock=lambda: now[0])
    first = kept.take()
    first.append(1)
    now[0] = 5.0  # the first incarnation crashes soon after it started: its state was its own
    assert kept.take() is first
    now[0] = 60.0  # a later crash, the restarted one having lived long enough
    assert kept.take() is first
    now[0] = 70.0  # and again within 30 s of that restart: maybe the state is what crashes it
    with caplog.at_level(logging.WARNING, logger="trioscope.runtime"):
        fresh = kept.take()
    assert fresh is not first and fresh == [] and len(made) == 2
    assert "starting from fresh state" in caplog.text
    now[0] = 71.0  # the fresh state was made, not handed on: the next crash keeps it
    assert kept.take() is fresh
