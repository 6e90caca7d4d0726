"""One process's replay guard (``LocalReplayIds``) across the server's wall
clock set while it runs: agents sign by their clocks, which a server clock
set right again agrees with."""

from __future__ import annotations

import pytest

from trioscope.store import _limits
from trioscope.store._limits import LocalReplayIds

T0 = 1_800_000_000.0


class Clocks:
    """The wall and monotonic clocks ``_limits`` reads, moved by hand."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wall, self.mono = T0, 1000.0
        monkeypatch.setattr(_limits.time, "time", lambda: self.wall)
        monkeypatch.setattr(_limits.time, "monotonic", lambda: self.mono)

    def elapse(self, seconds: float, *, step: float = 0.0) -> None:
        self.wall += seconds + step
        self.mono += seconds


async def test_the_start_is_read_on_the_clock_as_set_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's clock 10 minutes ahead at start, set right 30 s later:
    every agent's request was refused as signed before the start for 9.5
    minutes (its signing time, right, before the start as the wrong clock read it)."""
    clocks = Clocks(monkeypatch)
    replay = LocalReplayIds(600.0)
    assert replay.signed_since == T0
    clocks.elapse(30.0, step=-600.0)
    assert replay.signed_since == T0 - 600.0  # 30 s ago, as the clock reads now
    assert clocks.wall > replay.signed_since
    clocks.elapse(30.0, step=+1200.0)
    assert replay.signed_since == T0 + 600.0  # set forward: what was signed before the start still is


async def test_a_request_seen_is_refused_again_after_the_clock_is_set_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remembered for 600 s of the monotonic clock, an id was forgotten
    while its signing time, the clock set back 2 hours, came back within the
    allowed skew: the same signed request was taken again."""
    clocks = Clocks(monkeypatch)
    replay = LocalReplayIds(600.0)
    signed_at = clocks.wall
    assert await replay.first_use("agent/1", signed_at)
    clocks.elapse(10.0, step=-7200.0)
    for _ in range(12):  # two hours on the clock as set now: the request is within the skew again at the end
        clocks.elapse(600.0)
        assert not await replay.first_use("agent/1", signed_at)
    clocks.elapse(601.0)  # past its signing time + the window: refused as too old by the skew check, forgettable
    assert await replay.first_use("agent/1", signed_at)
