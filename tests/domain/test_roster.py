"""Whom the server forgets when it tracks its limit of agents."""

import os
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

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


def fresh(*agents: tuple[str, str]) -> AgentRoster:
    """Probes (agent id, source) heard from in this order, all fresh at 1000."""
    found = AgentRoster()
    for at, (agent_id, source) in enumerate(agents):
        found.touch(agent_id, 900.0 + at, source)
    return found


def never_enrolled(agent_id: str) -> bool:
    return False


def test_a_new_probe_takes_a_place_of_an_address_holding_more():
    found = fresh(("a1", "10.0.0.1"), ("a2", "10.0.0.1"), ("a3", "10.0.0.1"), ("b1", "10.0.0.2"))
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=never_enrolled, for_enrolled=False,
                             source="10.0.0.2") == "a1"
    found.forget("a1")
    found.touch("b2", 950.0, "10.0.0.2")  # two each now: the next new one from either waits for a stale one
    for source in ("10.0.0.1", "10.0.0.2"):
        assert found.reclaimable(1000.0, stale_after=STALE, enrolled=never_enrolled, for_enrolled=False,
                                 source=source) is None


def test_an_address_never_takes_its_own_places_nor_an_enrolled_probes():
    found = fresh(("a1", "10.0.0.1"), ("a2", "10.0.0.1"), ("a3", "10.0.0.1"))
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=never_enrolled, for_enrolled=False,
                             source="10.0.0.1") is None
    found.touch("b1", 990.0, "10.0.0.2")
    enrolled = {"a1", "a2"}.__contains__
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=enrolled, for_enrolled=False,
                             source="10.0.0.2") == "a3"
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled={"a1", "a2", "a3"}.__contains__,
                             for_enrolled=False, source="10.0.0.2") is None
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=never_enrolled, for_enrolled=False) is None


def test_a_probe_heard_from_elsewhere_moves_to_that_source():
    found = fresh(("a1", "10.0.0.1"), ("a2", "10.0.0.1"), ("b1", "10.0.0.2"))
    found.touch("a2", 990.0, "10.0.0.2")
    assert (found.held_by("10.0.0.1"), found.held_by("10.0.0.2")) == (1, 2)
    found.touch("a2", 995.0)  # from the stream, no address: where it was
    assert found.source_of("a2") == "10.0.0.2"
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=never_enrolled, for_enrolled=False,
                             source="10.0.0.1") == "b1"
    found.retain({"a1"}.__contains__)
    assert (found.held_by("10.0.0.1"), found.held_by("10.0.0.2")) == (1, 0)
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=never_enrolled, for_enrolled=False,
                             source="10.0.0.3") == "a1"


def test_a_stale_probe_goes_first_whatever_its_source():
    found = AgentRoster()
    found.touch("b0", 100.0, "10.0.0.2")
    for at, agent_id in enumerate(("a1", "a2", "a3")):
        found.touch(agent_id, 900.0 + at, "10.0.0.1")
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=never_enrolled, for_enrolled=False,
                             source="10.0.0.3") == "b0"


@given(st.lists(st.tuples(st.sampled_from(["touch", "forget", "retain", "reclaim"]), st.sampled_from("abcdefgh"),
                          st.sampled_from([None, "x", "y", "z"]), st.sampled_from([None, False, True])),
                max_size=60))
def test_the_counts_and_the_largest_source_follow_every_change(steps):
    """Each source counts its unenrolled probes; the largest is one holding most."""
    found = AgentRoster()
    enrolled: dict[str, bool] = {}
    for at, (step, agent_id, source, signed) in enumerate(steps):
        if step == "touch":
            found.touch(agent_id, float(at), source, signed)
            if signed is not None:
                enrolled[agent_id] = signed
        elif step == "forget":
            found.forget(agent_id)
            enrolled.pop(agent_id, None)
        elif step == "retain":
            found.retain(lambda a: a != agent_id)
            enrolled.pop(agent_id, None)
        else:
            victim = found.reclaimable(float(at), stale_after=STALE, enrolled=lambda a: enrolled.get(a, False),
                                       for_enrolled=False, source=source)
            assert victim is None or (victim in found and not enrolled.get(victim, False))
        counts: dict[str, int] = {}
        for a in "abcdefgh":
            if (s := found.source_of(a)) is not None and not enrolled.get(a, False):
                assert a in found
                counts[s] = counts.get(s, 0) + 1
        assert {s: found.held_by(s) for s in "xyz" if found.held_by(s)} == counts
        largest = found._tally.largest()
        assert (largest is None) == (not counts)
        if counts:
            assert counts[largest] == max(counts.values())


def test_enrolled_probes_count_in_no_source_s_share():
    found = AgentRoster()
    for at, agent_id in enumerate(("e1", "e2", "e3")):
        found.touch(agent_id, 900.0 + at, "10.0.0.1", enrolled=True)
    found.touch("b1", 950.0, "10.0.0.2")
    found.touch("b2", 951.0, "10.0.0.2")
    found.touch("a1", 960.0, "10.0.0.1")  # the site's first unsigned probe: one against two
    enrolled = {"e1", "e2", "e3"}.__contains__
    assert found.held_by("10.0.0.1") == 1
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=enrolled, for_enrolled=False,
                             source="10.0.0.1") == "b1"


def test_of_sources_holding_as_many_the_first_to_hold_that_many_gives_way_whatever_the_hash_seed():
    """Replicas that saw the same reports make room alike: a set's order (the
    first version's) followed each process's string hashing."""
    program = """
from trioscope.domain.roster import AgentRoster
found = AgentRoster()
for at, (agent_id, source) in enumerate([("d1", "d"), ("c1", "c"), ("b1", "b"), ("a1", "a"),
                                         ("a2", "a"), ("b2", "b"), ("c2", "c"), ("d2", "d")]):
    found.touch(agent_id, 900.0 + at, source)
found.touch("n1", 990.0, "new")
print(found.reclaimable(1000.0, stale_after=300.0, enrolled=lambda a: False, for_enrolled=False, source="new"))
"""
    victims = {subprocess.run([sys.executable, "-c", program], env={**os.environ, "PYTHONHASHSEED": str(seed)},
                              capture_output=True, text=True, check=True).stdout.strip() for seed in range(6)}
    assert victims == {"a1"}
