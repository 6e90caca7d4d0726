"""Probes' clocks against the server's: where a report's own time stands on
the server's clock. Pure: receive times are passed in.

A probe dates each report by its host's clock, which may run behind the
server's (a VM without NTP) or ahead of it. Taken as they are, the reports of
a clock six minutes behind put their metric points six minutes back (a PromQL
query at "now", with its five minutes of lookback, found nothing of the host)
and their nodes showed "seen 6 minutes ago". But a report's own time cannot
simply be replaced by its receive time either: a probe sends what it buffered
through an outage back to back, and those reports belong where they were
collected.

So each agent's clock offset is estimated from its reports (``ClockOffset``):
the least ``received_at - timestamp`` among its recent ones. A report delayed
on the way (buffered, retried) only has a larger difference, so the least is
the clock's offset plus the fastest delivery. Within ``CLOCK_TOLERANCE`` the
clock is believed as it is; beyond, every report's own time is shifted by the
offset (``report_times``), buffered ones included, which therefore still land
where they belong.

An offset is taken only once two consecutive reports were sent live (their
receive times as far apart as their own times, within ``DELIVERY_JITTER``):
the first reports the server gets of a probe may be what it buffered (a
server restarted without a report stream: it has no estimate), collected an
interval apart and received back to back, and one such report alone is the
same as one of a clock behind. They are believed, and land where they were
collected, as they did before estimates; a probe whose clock is behind has
its first report where its clock says, and the next ones, sent live, shifted.

The estimate is a function of the agent's reports in the order they are
handed on, each with its receive time: with a report stream every replica
reads the same reports in the same order with the same receive times, and
finds the same times (a replica rebuilding from the stream too, for every
report whose ``OFFSET_SPANS`` spans before it are still on the stream; the
stream keeps ``max_data_age`` of them).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import attrs

from trioscope.wire import Report

CLOCK_TOLERANCE = 5.0
"""Seconds of offset within which a probe's clock is believed as it is: what
collecting a report and delivering it take. Beyond it the offset is the
clock's, and reports' times are shifted by it."""
DELIVERY_JITTER = 1.0
"""Seconds by which two consecutive reports of an agent may be received
further apart, or closer, than their own times say for them to count as sent
live (a burst of buffered reports is collected an interval apart and
received back to back)."""
OFFSET_SPAN = 30.0
"""Seconds of receive time over which one least difference is remembered."""
OFFSET_SPANS = 8
"""Spans an estimate remembers: the latest ones in which the agent reported
(4 minutes of reporting), however long ago, so that the reports a probe
buffered through an outage (a burst of at most a couple of spans) are judged
against the clock it had before. What the estimate forgets is how long a
clock set back (right, then behind) takes to be followed; a clock set right
is followed at once (its differences are the least)."""


@attrs.frozen
class ReportTimes:
    """A report's times on the server's clock (``report_times``)."""

    seen: float
    """Its own time on the server's clock, never after it was received: which
    of an agent's reports is its newest, and when its nodes were seen."""
    metrics: float
    """Where its metrics go in every history: ``seen``, or its receive time if
    ``seen`` is not within the history window before it (a report buffered
    for longer than any history keeps: its value stands at its arrival)."""


def report_time(report: Report, received_at: float, offset: float = 0.0) -> float:
    """``report``'s own time on the server's clock (``ReportTimes.seen``):
    shifted by its agent's clock ``offset`` (``ClockOffset.offset``) when that
    is beyond ``CLOCK_TOLERANCE``, and never after ``received_at``.

    Never after: a probe whose clock runs ahead by less than the tolerance (or
    by up to ``MAX_AHEAD``, with no estimate yet) would otherwise make its next
    reports, rightly dated, look older than that one and be left out until the
    server's clock caught up: its nodes frozen at that report's values."""
    at = report.timestamp.timestamp()
    if abs(offset) > CLOCK_TOLERANCE:
        at += offset
    return min(at, received_at)


SERVER_STEP = 5.0
"""Seconds an agent's newest report may lie after the receipt of the next
before that says the server's own clock was set back in between (``newer``):
slack for replicas' clocks, which the report stream carries each one's of
(one a second ahead of another, a buffered report taken by the other would
pass for the newest). A step back smaller holds an agent for as long."""


def newer(seen: float, received_at: float, than: float) -> bool:
    """Whether a report seen at ``seen`` (``ReportTimes.seen``) and received
    at ``received_at`` replaces one seen at ``than`` as its agent's newest:
    it is no older, or ``than`` lies after this report's receipt. No report's
    time does on a steady clock (``report_time`` is never after its receipt),
    so the server's clock was set back since (NTP stepping it, an operator
    fixing it): every report after the step is older than the last before it,
    and left out, the agent's nodes and latest report froze for as long as
    the step (hours). A report a probe buffered is still older: its receipt
    is after the newest's."""
    return seen >= than or than > received_at + SERVER_STEP


def report_times(report: Report, received_at: float, window: float, offset: float = 0.0) -> ReportTimes:
    """``report``'s times on the server's clock (see ``ReportTimes``), its
    agent's clock ``offset`` given (0: believed as it is); ``window``: the
    history window (``storage.max_data_age``), one for every history."""
    seen = report_time(report, received_at, offset)
    return ReportTimes(seen, seen if seen > received_at - window else received_at)


class ClockOffset:
    """The estimate of one agent's clock offset (see the module docstring):
    the least ``received_at - timestamp`` of each ``OFFSET_SPAN`` of receive
    time in which it reported, for the latest ``OFFSET_SPANS`` of them, and
    whether two of its reports were sent live in any of those."""

    __slots__ = ("_spans", "_last", "_later")

    def __init__(self) -> None:
        self._spans: dict[int, float] = {}
        """Span number (receive time // ``OFFSET_SPAN``) -> the least
        difference of the reports in it sent live after the one before."""
        self._last: tuple[float, float] | None = None
        """The last report counted: its own time and its receive time."""
        self._later = 0
        """Reports in a row sent live, each later than the estimate by more than
        ``CLOCK_TOLERANCE``: two, and the clock was set back (``observe``)."""

    def observe(self, report: Report, received_at: float) -> None:
        """Count ``report``, received at ``received_at``. Observing one twice
        changes nothing (a report handed on again after a full mailbox).

        Only a report sent live after the one before counts: a report dated
        ahead by a glitch of its clock (or the one after it) is not, and took
        the estimate for ``OFFSET_SPANS`` spans (its host's reports all older
        than it, the host frozen for 4 minutes). A clock set back (ahead, then
        right; or right, then behind) is followed after two live reports that
        say so, the spans before it forgotten."""
        at = report.timestamp.timestamp()
        last = self._last
        if last == (at, received_at):
            return
        live = (last is not None and at > last[0]
                and abs((received_at - last[1]) - (at - last[0])) <= DELIVERY_JITTER)
        self._last = (at, received_at)
        if not live:
            return
        difference = received_at - at
        spans = self._spans
        if spans and difference > min(spans.values()) + CLOCK_TOLERANCE:
            self._later += 1
            if self._later < 2:
                return  # one late report is not the clock
            spans.clear()
        self._later = 0
        span = math.floor(received_at / OFFSET_SPAN)
        known = spans.get(span)
        if known is not None:
            spans[span] = min(known, difference)
            return
        if len(spans) >= OFFSET_SPANS:
            oldest = min(spans)
            if span < oldest:  # received before every span remembered (a replica's clock set back)
                return
            del spans[oldest]
        spans[span] = difference

    @property
    def offset(self) -> float:
        """The estimated offset (server clock less the agent's): 0 (its reports
        believed as they are) until two were sent live within the spans remembered."""
        return min(self._spans.values()) if self._spans else 0.0


class ClockOffsets:
    """Every agent's ``ClockOffset``, by agent id and node scope (the id
    under another tenant is another probe), at most ``limit`` of them: the
    least recently reporting is forgotten first (a forgotten agent back
    starts anew, as a new one does)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"invalid limit: {limit!r}")
        self.limit = limit
        self._agents: OrderedDict[tuple[str, str | None], ClockOffset] = OrderedDict()

    def __len__(self) -> int:
        return len(self._agents)

    def times(self, report: Report, received_at: float, window: float, scope: str | None = None) -> ReportTimes:
        """Count ``report`` (received at ``received_at``, its nodes under
        ``scope``) in its agent's estimate, and return its times by it
        (``report_times``; ``window``: ``storage.max_data_age``)."""
        key = (report.agent_id, scope)
        clock = self._agents.get(key)
        if clock is None:
            clock = self._agents[key] = ClockOffset()
            if len(self._agents) > self.limit:
                self._agents.popitem(last=False)
        else:
            self._agents.move_to_end(key)
        clock.observe(report, received_at)
        return report_times(report, received_at, window, clock.offset)
