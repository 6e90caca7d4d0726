"""The claims a replica learns from the report stream (``domain.stream_claims``):
what a report read back does to its probe agent id's claim, decided by the
stream's own receive times."""

from __future__ import annotations

from trioscope.domain.deployments import SPARE_ENTRIES, AgentDirectory, AgentRecord, AgentStatus
from trioscope.domain.stream_claims import ClaimStep, StreamClaims, Verdict

T0 = 1_760_000_000.0
STALE = 300.0


def _agent(agent_id: str, status: AgentStatus = AgentStatus.ACTIVE) -> AgentRecord:
    return AgentRecord(id=agent_id, deployment_hash="dep", token_hash="x", status=status, created_at=T0)


def _directory(*agents: AgentRecord, claims: dict[str, str] | None = None) -> AgentDirectory:
    directory = AgentDirectory()
    for agent in agents:
        directory.put_agent(agent)
    for reporter, agent_id in (claims or {}).items():
        directory.attach_reporter(reporter, agent_id)
    return directory


def test_a_signed_report_attaches_its_id_to_its_signer_unless_it_holds_it_already() -> None:
    claims = StreamClaims(STALE)
    directory = _directory(_agent("a1"), _agent("a2"), claims={"probe-1": "a1"})
    assert claims.judge(directory, "probe-1", enrolled=True, signer="a1", received_at=T0) == ClaimStep(Verdict.HAND_ON)
    assert claims.judge(directory, "probe-2", enrolled=True, signer="a1", received_at=T0) == ClaimStep(
        Verdict.ATTACH, signer="a1")
    # Another signer takes it (its publisher vouched: the claim lapsed there).
    assert claims.judge(directory, "probe-1", enrolled=True, signer="a2", received_at=T0) == ClaimStep(
        Verdict.ATTACH, signer="a2")


def test_a_report_signed_by_a_retired_or_unknown_agent_claims_nothing() -> None:
    claims = StreamClaims(STALE)
    directory = _directory(_agent("gone", AgentStatus.DECOMMISSIONED))
    for signer in ("gone", "stranger", None):
        assert claims.judge(directory, "probe-1", enrolled=True, signer=signer, received_at=T0).verdict is Verdict.HAND_ON
    assert len(claims) == 0


def test_an_unsigned_report_under_a_claimed_id_is_left_out_until_the_claim_lapses_by_the_streams_times() -> None:
    claims = StreamClaims(STALE)
    directory = _directory(_agent("a1"), claims={"probe-1": "a1"})
    assert claims.judge(directory, "probe-9", enrolled=False, signer=None, received_at=T0).verdict is Verdict.HAND_ON
    claims.judge(directory, "probe-1", enrolled=True, signer="a1", received_at=T0)
    assert claims.judge(directory, "probe-1", enrolled=False, signer=None, received_at=T0 + STALE - 1) == ClaimStep(
        Verdict.LEAVE_OUT, holder="a1")
    assert claims.judge(directory, "probe-1", enrolled=False, signer=None, received_at=T0 + STALE).verdict is (
        Verdict.RELEASE)
    assert len(claims) == 0  # released: the next unsigned one is the topology's word again (ASK)


def test_a_claim_not_seen_signed_here_is_the_topologys_word() -> None:
    claims = StreamClaims(STALE)
    directory = _directory(_agent("a1"), claims={"probe-1": "a1"})
    step = claims.judge(directory, "probe-1", enrolled=False, signer=None, received_at=T0)
    assert step == ClaimStep(Verdict.ASK, holder="a1")
    assert claims.settle("probe-1", "a1", lapsed=False) == ClaimStep(Verdict.LEAVE_OUT, holder="a1")
    assert claims.settle("probe-1", "a1", lapsed=True).verdict is Verdict.RELEASE


def test_ids_no_longer_claimed_are_forgotten_past_two_per_agent_and_the_spare() -> None:
    claims = StreamClaims(STALE)
    directory = _directory(_agent("a1"), claims={"kept": "a1"})
    claims.judge(directory, "kept", enrolled=True, signer="a1", received_at=T0)
    for n in range(2 + SPARE_ENTRIES):  # signed reports of ids whose claims were released since
        claims.judge(directory, f"gone-{n}", enrolled=True, signer="a1", received_at=T0)
    assert len(claims) == 2 + SPARE_ENTRIES + 1
    claims.judge(directory, "new", enrolled=True, signer="a1", received_at=T0)
    assert len(claims) == 2  # the one still claimed, and the new one
    assert claims.judge(directory, "kept", enrolled=False, signer=None, received_at=T0 + 1).verdict is Verdict.LEAVE_OUT
