"""The server's wall clock against its monotonic one: when the wall clock was
set (NTP stepping it at boot, an operator fixing it, a VM resumed after a
suspend, which the monotonic clock does not count), and by how much.

Times that are shown or stored (a report's receipt, when an agent was last
heard from) are wall times; how long ago something was is only right across
a step if the times it is measured from moved with the clock. What keeps wall
times to measure durations by reads its steps here and moves them (the
alerts' sightings), or turns them into monotonic times once (the roster).
Pure: both readings are passed in.
"""

from __future__ import annotations

STEP = 1.0
"""Seconds by which the wall clock must move against the monotonic one to count
as set: read anew each time, the two clocks' readings a few microseconds apart
(and NTP slewing the wall clock by a little a second) are no step."""


class WallSteps:
    """The wall clock less the monotonic one, as last taken (``offset``), and
    the steps between two readings (``step``)."""

    __slots__ = ("_offset",)

    def __init__(self) -> None:
        self._offset: float | None = None

    def offset(self, wall: float, monotonic: float) -> float:
        """The wall clock less the monotonic one: kept while it holds within
        ``STEP`` (so that times converted at once order as they came), taken
        anew when the wall clock was set."""
        self.step(wall, monotonic)
        assert self._offset is not None
        return self._offset

    def step(self, wall: float, monotonic: float) -> float:
        """Seconds the wall clock was set by since the last reading (forward
        positive; 0.0 at the first reading and within ``STEP``)."""
        offset = wall - monotonic
        if self._offset is None:
            self._offset = offset
            return 0.0
        moved = offset - self._offset
        if abs(moved) <= STEP:
            return 0.0
        self._offset = offset
        return moved
