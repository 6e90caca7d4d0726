"""Whom the server forgets when it tracks its limit of agents."""

from trioscope.domain.roster import AgentRoster

STALE = 300.0


def roster(*heard: tuple[str, float]) -> AgentRoster:
    found = AgentRoster()
    for agent_id, at in heard:
        found.touch(agent_id, at)
    return found


def test_a_new_unenrolled_probe_takes_the_place_of_a_stale_unenrolled_one():
    found = roster(("old", 0.0), ("new", 900.0))
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=lambda a: False, for_enrolled=False) == "old"


def test_a_new_unenrolled_probe_never_takes_a_fresh_ones_place():
    found = roster(("a", 900.0), ("b", 950.0))
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=lambda a: False, for_enrolled=False) is None


def test_enrolled_probes_are_never_forgotten():
    found = roster(("enrolled", 0.0), ("loose", 900.0))
    enrolled = {"enrolled"}.__contains__
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=enrolled, for_enrolled=False) is None
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=enrolled, for_enrolled=True) == "loose"
    only_enrolled = roster(("enrolled", 0.0))
    assert only_enrolled.reclaimable(1000.0, stale_after=STALE, enrolled=enrolled, for_enrolled=True) is None


def test_hearing_from_a_probe_moves_it_to_the_back():
    found = roster(("a", 0.0), ("b", 10.0))
    found.touch("a", 20.0)
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=lambda a: False, for_enrolled=False) == "b"
    found.forget("b")
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=lambda a: False, for_enrolled=False) == "a"
    assert len(found) == 1 and "a" in found


def test_retain_forgets_probes_no_longer_tracked():
    found = roster(("a", 0.0), ("b", 1.0), ("c", 2.0))
    found.retain({"b"}.__contains__)
    assert len(found) == 1 and "b" in found
