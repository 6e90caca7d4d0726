"""A probe's clock offset and a report's times on the server's clock
(``trioscope.domain.clocks``): plain values, no clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from trioscope.domain.clocks import (
    CLOCK_TOLERANCE, OFFSET_SPAN, OFFSET_SPANS, ClockOffset, ClockOffsets, ReportTimes, report_times,
)
from trioscope.wire import Report

WINDOW = 3600.0
"""The history window (``storage.max_data_age``'s default)."""
START = 1_800_000_000.0
"""Server time the tests' probes start reporting at."""
INTERVAL = 15.0
DELIVERY = 0.2
"""Seconds from a report's collection to its arrival, live."""
BEHIND = 360.0


def seconds(expected: list[float], within: float = 1e-6) -> object:
    """``expected`` times, each within ``within`` seconds (``pytest.approx``'s
    default is relative: a millionth of an epoch time is half an hour)."""
    return pytest.approx(expected, rel=0, abs=within)


def report(at: float, agent_id: str = "agent-1") -> Report:
    """A report dated ``at`` by its probe's clock."""
    return Report(agent_id=agent_id, timestamp=datetime.fromtimestamp(at, UTC))


def live(clocks: ClockOffsets, first: float, count: int, skew: float = 0.0) -> list[ReportTimes]:
    """``count`` reports collected every ``INTERVAL`` from server time ``first``
    by a clock ``skew`` seconds behind, each received ``DELIVERY`` later."""
    return [clocks.times(report(first + i * INTERVAL - skew), first + i * INTERVAL + DELIVERY, WINDOW)
            for i in range(count)]


def test_a_clock_right_is_believed_as_it_is() -> None:
    clocks = ClockOffsets(10)
    times = live(clocks, START, 20)
    assert [t.seen for t in times] == [START + i * INTERVAL for i in range(20)]
    assert [t.metrics for t in times] == [t.seen for t in times]


def test_a_clock_six_minutes_behind_is_shifted_to_the_servers_once_two_reports_came_live() -> None:
    clocks = ClockOffsets(10)
    times = live(clocks, START, 20, skew=BEHIND)
    # Its first report may be one it buffered (a clock right): believed.
    assert times[0] == ReportTimes(START - BEHIND, START - BEHIND)
    # At the server's time of collection plus the fastest delivery: now, not six minutes back.
    assert [t.seen for t in times[1:]] == seconds([START + i * INTERVAL + DELIVERY for i in range(1, 20)])
    assert [t.metrics for t in times] == [t.seen for t in times]


def test_reports_received_back_to_back_before_any_estimate_land_at_their_own_times() -> None:
    """What a probe buffered, sent first to a server that has no estimate of
    its clock (restarted without a report stream): collected an interval
    apart, received back to back, each alone the same as a clock behind's."""
    for skew in (0.0, BEHIND):
        clocks = ClockOffsets(10)
        dated = [START - skew - (9 - i) * INTERVAL for i in range(10)]
        times = [clocks.times(report(at), START + 0.05 * i, WINDOW) for i, at in enumerate(dated)]
        assert [t.seen for t in times] == dated
        assert [t.metrics for t in times] == dated
        after = live(clocks, START + INTERVAL, 2, skew)  # then reporting live: a clock behind is found
        assert [t.seen for t in after] == seconds([START + INTERVAL + i * INTERVAL + (DELIVERY if skew else 0.0)
                                                         for i in range(2)])


def test_a_clock_ahead_is_shifted_back_and_never_dated_after_its_arrival() -> None:
    clocks = ClockOffsets(10)
    times = live(clocks, START, 5, skew=-200.0)  # within MAX_AHEAD: accepted at the edge
    assert [t.seen for t in times] == seconds([START + i * INTERVAL + DELIVERY for i in range(5)])
    # Ahead by less than the tolerance: believed, but not after its arrival.
    slight = ClockOffsets(10).times(report(START + CLOCK_TOLERANCE - 1), START, WINDOW)
    assert slight == ReportTimes(START, START)


def test_a_burst_buffered_through_an_outage_by_a_clock_right_lands_at_its_own_times() -> None:
    clocks = ClockOffsets(10)
    live(clocks, START, 8)
    back = START + 1800.0  # the server was away for half an hour; the probe buffered 40 reports
    dated = [back - (39 - i) * INTERVAL for i in range(40)]
    times = [clocks.times(report(at), back + 0.05 * i, WINDOW) for i, at in enumerate(dated)]
    assert [t.seen for t in times] == dated
    assert [t.metrics for t in times] == dated


def test_a_burst_buffered_through_an_outage_by_a_clock_behind_lands_shifted() -> None:
    clocks = ClockOffsets(10)
    live(clocks, START, 8, skew=BEHIND)
    back = START + 1800.0
    collected = [back - (39 - i) * INTERVAL for i in range(40)]
    times = [clocks.times(report(at - BEHIND), back + 0.05 * i, WINDOW) for i, at in enumerate(collected)]
    assert [t.seen for t in times] == seconds([at + DELIVERY for at in collected])


def test_a_clock_set_right_is_followed_at_once() -> None:
    clocks = ClockOffsets(10)
    live(clocks, START, 20, skew=BEHIND)
    fixed = START + 20 * INTERVAL
    times = live(clocks, fixed, 3)
    # The first after the jump, not sent live after the one before, at its arrival.
    assert [t.seen for t in times] == seconds([fixed + i * INTERVAL for i in range(3)], DELIVERY + 1e-6)


def test_a_clock_set_back_is_followed_after_two_live_reports_say_so() -> None:
    clocks = ClockOffsets(10)
    live(clocks, START, 20)
    set_back = START + 20 * INTERVAL
    remembered = int(OFFSET_SPANS * OFFSET_SPAN / INTERVAL) + 2
    times = live(clocks, set_back, remembered + 4, skew=BEHIND)
    assert times[0].seen == set_back - BEHIND  # believed as it was: the right clock is remembered
    # Two reports sent live say the clock was set back: followed from the third.
    assert [t.seen for t in times[2:]] == seconds(
        [set_back + i * INTERVAL + DELIVERY for i in range(2, remembered + 4)])


def test_an_estimate_remembers_at_most_its_spans() -> None:
    clock = ClockOffset()
    for i in range(10 * OFFSET_SPANS):
        late = 0 if i < OFFSET_SPANS else 3  # a slower path from then (within the tolerance: no clock set back)
        clock.observe(report(START + i * OFFSET_SPAN - late), START + i * OFFSET_SPAN)
    assert len(clock._spans) == OFFSET_SPANS
    assert clock.offset == 3  # the least of the latest spans': the older ones forgotten


def test_one_report_dated_ahead_by_a_glitch_moves_no_estimate() -> None:
    """Counted, a report 290 s ahead (within ``MAX_AHEAD``) made the offset
    -290 s for ``OFFSET_SPANS`` spans: the next 15 reports older than it, the
    host frozen for 4 minutes (the session review's)."""
    clocks = ClockOffsets(10)
    live(clocks, START, 10)
    glitch = START + 10 * INTERVAL
    clocks.times(report(glitch + 290), glitch + DELIVERY, WINDOW)
    after = live(clocks, glitch + INTERVAL, 10)
    assert [t.seen for t in after] == [glitch + (i + 1) * INTERVAL for i in range(10)]


def test_a_clock_ahead_then_set_right_is_followed_after_two_live_reports() -> None:
    clocks = ClockOffsets(10)
    live(clocks, START, 20, skew=-120)  # 2 minutes ahead: shifted back
    fixed = START + 20 * INTERVAL
    times = live(clocks, fixed, 6)
    assert [t.seen for t in times[2:]] == [fixed + i * INTERVAL for i in range(2, 6)]


def test_an_estimate_is_the_same_for_the_same_reports_whatever_seen_twice() -> None:
    """Every replica reads the same reports in the same order, and a report
    handed on again after a full mailbox is counted again."""
    sent = [(report(START + i * INTERVAL - BEHIND - (i % 3) * 40), START + i * INTERVAL) for i in range(30)]
    once, twice = ClockOffsets(10), ClockOffsets(10)
    first = [once.times(r, at, WINDOW) for r, at in sent]
    second = []
    for r, at in sent:
        twice.times(r, at, WINDOW)
        second.append(twice.times(r, at, WINDOW))
    assert first == second


def test_agents_are_estimated_apart_and_at_most_limit_kept() -> None:
    clocks = ClockOffsets(2)
    clocks.times(report(START - BEHIND, "behind"), START, WINDOW)
    assert clocks.times(report(START + 1 - BEHIND, "behind"), START + 1, WINDOW).seen == START + 1
    assert clocks.times(report(START, "right"), START, WINDOW).seen == START
    assert clocks.times(report(START + INTERVAL, "right"), START + INTERVAL, WINDOW).seen == START + INTERVAL
    clocks.times(report(START, "third"), START, WINDOW)
    assert len(clocks) == 2  # "behind", the least recently reporting, forgotten
    with pytest.raises(ValueError, match="invalid limit: 0"):
        ClockOffsets(0)


def test_one_window_for_every_history() -> None:
    """A report older than the history window after its shift (buffered for
    longer than any history keeps) has its metrics at its arrival; its own
    time still says it is not the agent's newest."""
    times = report_times(report(START - 2 * WINDOW), START, WINDOW)
    assert times == ReportTimes(START - 2 * WINDOW, START)
    inside = report_times(report(START - WINDOW + 1), START, WINDOW)
    assert inside == ReportTimes(START - WINDOW + 1, START - WINDOW + 1)
