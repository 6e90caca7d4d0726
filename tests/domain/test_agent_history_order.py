"""A probe's host history when its reports come late or out of order: the later
sample of a bucket wins (as in Prometheus), not the later arrival."""

from __future__ import annotations

from tests.domain.test_agent_state_scope import _report
from tests.domain.test_topology import T0
from trioscope.domain.agents import AgentState, PackedReport
from trioscope.domain.timeseries import RESOLUTION

BUCKET = T0 - T0 % RESOLUTION


def test_an_older_report_fills_an_empty_bucket_but_never_overwrites_a_later_sample() -> None:
    state = AgentState("r", T0, 3600.0)
    arrivals = [(BUCKET + 14, 90.0), (BUCKET + 2, 10.0),  # one bucket, the later sample first
                (BUCKET + 29, 30.0),  # a bucket of its own, newest when it came
                (BUCKET + 44, 50.0), (BUCKET + 31, 33.0)]  # the next: the earlier one last
    for at, usage in arrivals:
        state.receive(_report("h", at, usage), PackedReport.pack(b"{}"), BUCKET + 50)
    assert [p.values["cpu_usage"] for p in state.points(BUCKET - 60)] == [90.0, 30.0, 50.0]
    # A bucket only an older report speaks of is filled.
    state.receive(_report("h", BUCKET - 20, 7.0), PackedReport.pack(b"{}"), BUCKET + 51)
    assert [p.values["cpu_usage"] for p in state.points(BUCKET - 60)] == [7.0, 90.0, 30.0, 50.0]


def test_after_the_servers_clock_is_set_back_the_next_report_is_the_newest() -> None:
    """Its last report before the step dated after the receipt of the next
    (the server's clock was 10 minutes ahead): the next is the agent's newest
    (it was left out as older for 10 minutes); a buffered one still is not."""
    state = AgentState("r", T0, 3600.0)
    state.receive(_report("h", T0 + 600, 1.0), PackedReport.pack(b'{"n":1}'), T0 + 600)
    state.receive(_report("h", T0 + 15, 2.0), PackedReport.pack(b'{"n":2}'), T0 + 15)
    assert state.latest_raw == b'{"n":2}'
    state.receive(_report("h", T0 + 5, 3.0), PackedReport.pack(b'{"n":3}'), T0 + 20)
    assert state.latest_raw == b'{"n":2}'
