"""What a process observed of each agent (``domain.presence``): heard from,
commands it runs, and every table bounded by the directory's size."""

from __future__ import annotations

from trioscope.domain.deployments import AgentDirectory, AgentRecord, AgentStatus
from trioscope.domain.presence import AgentSightings

T0 = 1_760_000_000.0


def directory(*agent_ids: str) -> AgentDirectory:
    known = AgentDirectory()
    for agent_id in agent_ids:
        known.put_agent(AgentRecord(id=agent_id, deployment_hash="d1", token_hash="-", status=AgentStatus.ACTIVE,
                                    created_at=T0))
    return known


def test_a_request_is_timed_from_the_agents_previous_request_and_other_sightings_are_not() -> None:
    known, seen = directory("a"), AgentSightings()
    assert seen.heard("a", T0, known, tick=T0) is None  # its first
    assert seen.heard("a", T0 + 5, known, tick=T0 + 5, as_request=False) is None  # a held poll: there, not a request
    assert seen.heard("a", T0 + 30, known, tick=T0 + 30) == 30.0
    assert seen.seen["a"] == T0 + 30


def test_the_alerts_are_told_at_most_once_per_interval() -> None:
    seen = AgentSightings()
    assert seen.alerts_due("a", T0, 10.0)
    seen.alerts_told("a", T0)
    assert not seen.alerts_due("a", T0 + 9.9, 10.0)
    assert seen.alerts_due("a", T0 + 10.0, 10.0)


def test_an_agent_runs_each_command_until_its_outcome_or_its_time() -> None:
    known, seen = directory("a"), AgentSightings()
    seen.handed("a", "c1", known, runs_until=T0 + 100)
    seen.handed("a", "c2", known, runs_until=T0 + 50)
    seen.handed("a", "cancel", known, runs_until=None)  # a notice: nothing runs
    assert seen.last_commands["a"] == "cancel"
    seen.finished("a", "c1")  # one outcome ends that command only
    assert seen.busy(T0 + 10) == ["a"]
    assert seen.busy(T0 + 50) == []  # c2's time passed
    seen.handed("a", "c3", known, runs_until=T0 + 200)
    seen.finished("a", "c3")
    assert seen.busy(T0 + 60) == [] and seen.running == {}


def test_agents_the_directory_forgot_leave_every_table_once_it_outgrows_it() -> None:
    known, seen = directory("kept"), AgentSightings()
    for n in range(1030):
        gone = f"gone-{n}"
        seen.seen[gone] = seen.requested[gone] = seen.told[gone] = T0
        seen.addresses[gone] = "10.0.0.1"
    seen.heard("kept", T0 + 1, known, tick=T0 + 1)
    seen.address("kept", "10.0.0.2", known)
    assert list(seen.seen) == list(seen.requested) == ["kept"] and seen.told == {}
    assert seen.addresses == {"kept": "10.0.0.2"}
    seen.address("new", "10.0.0.3", known)  # few: nothing dropped
    assert seen.addresses == {"kept": "10.0.0.2", "new": "10.0.0.3"}


def test_an_agent_without_a_socket_has_no_latency() -> None:
    known, seen = directory("a"), AgentSightings()
    seen.latency("a", 0.01234, known)
    assert seen.latencies == {"a": 12.3}
    seen.no_socket("a")
    assert seen.latencies == {}


def test_when_agents_were_heard_from_follows_the_wall_clock_set() -> None:
    """Set back 2 hours, an agent silent for half an hour was online (heard
    from within the timeout of now) for as long; set forward, every agent offline."""
    known = AgentDirectory()
    seen = AgentSightings()
    held = seen.seen  # others hold the table: moved in place
    seen.heard("a", T0, known, tick=100.0)
    seen.follow_clock(T0 + 1800.0 - 7200.0, 1900.0)  # half an hour on, the clock set back 2 hours
    assert held["a"] == T0 - 7200.0  # heard from half an hour ago, by the clock as set now
    seen.follow_clock(T0 + 1810.0, 1910.0)  # set right again
    assert held["a"] == T0
    seen.heard("b", T0 + 1810.0, known, tick=1910.0)
    assert held == {"a": T0, "b": T0 + 1810.0}
