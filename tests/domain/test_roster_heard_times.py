"""A probe heard from at a time before others' (a report replayed from the
report stream) takes its place among them by time."""

from trioscope.domain.roster import AgentRoster

STALE = 300.0


def never(agent_id: str) -> bool:
    return False


def test_a_probe_heard_from_earlier_than_others_is_reclaimed_first():
    found = AgentRoster()
    found.touch("fresh", 900.0, "10.0.0.1")
    found.touch("replayed", 100.0, "10.0.0.1")  # older than the probe touched before it
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=never, for_enrolled=False) == "replayed"


def test_an_earlier_time_than_a_probes_own_changes_nothing():
    found = AgentRoster()
    found.touch("a", 100.0)
    found.touch("b", 900.0)
    found.touch("b", 50.0)  # a report received before its heartbeat, read back later
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=never, for_enrolled=False) == "a"
    found.forget("a")
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=never, for_enrolled=False) is None


def test_a_sources_oldest_probe_follows_the_times_heard_not_the_order_touched():
    found = AgentRoster()
    for agent_id, at in (("x1", 800.0), ("x2", 850.0), ("x0", 700.0)):
        found.touch(agent_id, at, "10.0.0.1")
    found.touch("y1", 900.0, "10.0.0.2")
    # 10.0.0.1 holds more than 10.0.0.2: its probe heard from longest ago goes.
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=never, for_enrolled=False,
                             source="10.0.0.2") == "x0"
