"""A probe counts as enrolled only while it is the probe id its enrolled agent
reports under: an agent that makes up probe ids holds one place, not every
place (each new id used to stay enrolled for good, in no address's share)."""

from hypothesis import given
from hypothesis import strategies as st

from trioscope.domain.roster import AgentRoster

STALE = 300.0


def never_enrolled(agent_id: str) -> bool:
    return False


def test_an_agent_signing_another_probe_id_supersedes_the_one_before():
    found = AgentRoster()
    found.touch("plain", 900.0, "10.0.0.1")
    found.touch("made-up-1", 901.0, "10.0.0.2", enrolled=True, signer="agent-a")
    found.touch("made-up-2", 902.0, "10.0.0.2", enrolled=True, signer="agent-a")
    assert found.superseded("made-up-1") and not found.superseded("made-up-2")
    current = {"made-up-2"}.__contains__  # what the directory says now
    # The superseded id goes first, for any newcomer, even from the address holding fewest.
    for for_enrolled in (False, True):
        assert found.reclaimable(1000.0, stale_after=STALE, enrolled=current, for_enrolled=for_enrolled,
                                 source="10.0.0.1") == "made-up-1"
    found.forget("made-up-1")
    # Then the rules as before: the current id is never taken, the fresh unenrolled one is its address's.
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=current, for_enrolled=False,
                             source="10.0.0.1") is None
    assert found.held_by("10.0.0.2") == 0


def test_one_agent_making_up_probe_ids_keeps_one_enrolled_place():
    """The reviewer's case: 300 made-up ids signed by one agent; earlier ids
    stayed enrolled, so fresh unenrolled probes could reclaim none of them."""
    found = AgentRoster()
    for i in range(60):
        found.touch(f"plain-{i}", 100.0 + i, "127.0.0.1")
    for i in range(300):
        found.touch(f"made-up-{i}", 200.0 + i, "127.0.0.1", enrolled=True, signer="agent-a")
    superseded = [f"made-up-{i}" for i in range(299) if found.superseded(f"made-up-{i}")]
    assert len(superseded) == 299 and not found.superseded("made-up-299")
    # New unenrolled probes of the same address take the superseded ids' places, oldest first.
    found.touch("late", 600.0, "127.0.0.1")
    assert found.reclaimable(600.0, stale_after=STALE, enrolled={"made-up-299"}.__contains__,
                             for_enrolled=False, source="127.0.0.1") == "made-up-0"


def test_agents_each_keep_their_current_probe_id_enrolled():
    """Another agent's new ids supersede none of theirs."""
    found = AgentRoster()
    found.touch("host-a", 900.0, "10.0.0.1", enrolled=True, signer="agent-a")
    found.touch("host-b", 901.0, "10.0.0.1", enrolled=True, signer="agent-b")
    for i in range(5):
        found.touch(f"made-up-{i}", 910.0 + i, "10.0.0.2", enrolled=True, signer="agent-x")
    assert not found.superseded("host-a") and not found.superseded("host-b")
    assert found.held_by("10.0.0.1") == 0
    current = {"host-a", "host-b", "made-up-4"}.__contains__
    victims = []
    while (victim := found.reclaimable(1000.0, stale_after=STALE, enrolled=current, for_enrolled=True)) is not None:
        victims.append(victim)
        found.forget(victim)
    assert victims == [f"made-up-{i}" for i in range(4)]


def test_a_heartbeat_keeps_a_probe_as_it_was_and_a_signed_report_makes_a_superseded_one_current_again():
    found = AgentRoster()
    found.touch("old", 900.0, "10.0.0.1", enrolled=True, signer="agent-a")
    found.touch("new", 901.0, "10.0.0.1", enrolled=True, signer="agent-a")
    found.touch("old", 902.0)  # a heartbeat: still superseded, in no share
    assert found.superseded("old") and found.held_by("10.0.0.1") == 0
    found.touch("new", 903.0)
    assert not found.superseded("new")
    found.touch("old", 904.0, enrolled=True, signer="agent-a")  # the agent went back to it
    assert not found.superseded("old") and found.superseded("new")
    found.touch("new", 905.0, enrolled=False)  # reported unsigned since: an unenrolled probe of its address
    assert not found.superseded("new") and found.held_by("10.0.0.1") == 1


def test_probes_signed_by_agents_not_named_count_as_enrolled_up_to_the_number_of_agents():
    """From the report stream a replica cannot name the signer: of the probes
    signed by agents it cannot name, no more than there are enrolled agents
    count as enrolled; the least recently heard beyond that are unenrolled."""
    found = AgentRoster()
    for i in range(5):
        found.touch(f"signed-{i}", 900.0 + i, "10.0.0.1", enrolled=True, signers=2)
    assert found.held_by("10.0.0.1") == 3
    found.touch("b1", 950.0, "10.0.0.2")
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=never_enrolled, for_enrolled=False,
                             source="10.0.0.2") == "signed-0"
    found.touch("signed-0", 960.0, enrolled=True, signers=2)  # heard from again: one of the two newest
    assert found.held_by("10.0.0.1") == 3
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=never_enrolled, for_enrolled=False,
                             source="10.0.0.2") == "signed-1"
    found.touch("signed-4", 970.0)  # a heartbeat demotes no other
    assert found.held_by("10.0.0.1") == 3


def test_a_new_enrolled_probe_takes_the_place_of_one_signed_beyond_the_number_of_agents_first():
    """Where the signers are not named, an agent making up probe ids yields
    more signed probes than agents: a new enrolled probe takes one of their
    places before an unenrolled probe's (as the superseded ids' where they are named)."""
    found = AgentRoster()
    found.touch("plain", 900.0, "10.0.0.1")
    for i in range(3):
        found.touch(f"made-up-{i}", 901.0 + i, "10.0.0.2", enrolled=True, signers=1)
    found.touch("made-up-3", 910.0, "10.0.0.2", enrolled=True, signers=1)
    assert found.enrolled_unnamed("made-up-3") and not found.enrolled_unnamed("made-up-2")
    enrolled = found.enrolled_unnamed
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=enrolled, for_enrolled=True) == "made-up-0"
    # For a new unenrolled probe they are in their address's share, as any unenrolled probe.
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=enrolled, for_enrolled=False,
                             source="10.0.0.1") == "made-up-0"
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=enrolled, for_enrolled=False,
                             source="10.0.0.2") is None
    found.touch("made-up-0", 920.0)  # a heartbeat: still one beyond the agents
    assert found.reclaimable(1000.0, stale_after=STALE, enrolled=enrolled, for_enrolled=True) == "made-up-1"


def test_a_late_copy_of_a_superseded_probes_report_does_not_make_it_current():
    """With a bus, a replica reads its own published report back from the
    stream; by then the agent may have signed another id, and the directory
    names no signer for the first."""
    found = AgentRoster()
    found.touch("first", 900.0, "10.0.0.1", enrolled=True, signer="agent-a")
    found.touch("second", 901.0, "10.0.0.1", enrolled=True, signer="agent-a")
    found.touch("first", 900.5, enrolled=True, signers=10)
    assert found.superseded("first")


@given(st.lists(st.tuples(st.sampled_from(["signed", "unnamed", "plain", "heartbeat", "forget"]),
                          st.sampled_from("abcdefgh"), st.sampled_from([None, "x", "y"]),
                          st.sampled_from(["s1", "s2", "s3"]), st.integers(1, 3)),
                max_size=80))
def test_each_probe_is_enrolled_superseded_or_in_its_sources_share(steps):
    """Whatever the order: each agent keeps at most one enrolled probe id, at
    most ``signers`` unnamed ones are enrolled once one more is, each source
    counts exactly its probes that are neither enrolled nor superseded, and
    every order follows the times heard from."""
    found = AgentRoster()
    for at, (step, agent_id, source, signer, signers) in enumerate(steps):
        if step == "signed":
            found.touch(agent_id, float(at), source, True, signer=signer)
        elif step == "unnamed":
            found.touch(agent_id, float(at), source, True, signers=signers)
            assert found.superseded(agent_id) or len(found._unnamed) <= signers  # (a superseded one stays so)
        elif step == "plain":
            found.touch(agent_id, float(at), source, False)
        elif step == "heartbeat":
            found.touch(agent_id, float(at))
        else:
            found.forget(agent_id)
        signers_seen = [s for s in found._signer.values() if s is not None]
        assert len(signers_seen) == len(set(signers_seen)) == len(found._reporter)
        counts: dict[str, int] = {}
        for a in "abcdefgh":
            states = [a in found._signer, found.superseded(a),
                      any(a in members for members in found._of_source.values())]
            assert sum(states) <= 1 and (a in found or not any(states))
            if a in found and not any(states):
                assert found.source_of(a) is None  # unenrolled with no source: in no share
            if states[2]:
                source_of = found.source_of(a)
                assert source_of is not None and a in found._of_source[source_of]
                counts[source_of] = counts.get(source_of, 0) + 1
        assert {s: found.held_by(s) for s in "xy" if found.held_by(s)} == counts
        assert not any(a in found._signer or found.superseded(a) for a in found._surplus)
        for order in (found._heard, found._unnamed, found._superseded, found._surplus, *found._of_source.values()):
            times = [found._heard[a] for a in order]
            assert times == sorted(times)
