"""Agent credentials: token hashes, request signatures, and authentication by the directory."""

from __future__ import annotations

import base64
import hashlib
import hmac

import attrs
import pytest

from trioscope.domain.deployments import (
    AgentAuthFailure,
    AgentDirectory,
    AgentRecord,
    AgentStatus,
    Deployment,
    hash_token,
    sign,
    signature_valid,
    token_matches,
)

T0 = 1_760_000_000.0
TOKEN = "agent-token-0123456789abcdefghijklmnopqrstuv"
BODY = b'{"command_id":"c-1","status":"completed"}'

# RFC 4231, test case 2: HMAC-SHA256(key="Jefe", data="what do ya want for nothing?").
RFC4231_KEY = "Jefe"
RFC4231_DATA = b"what do ya want for nothing?"
RFC4231_HEX = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


# --- token hashes --------------------------------------------------------------------


def test_hash_token_is_sha256_hex() -> None:
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_token_matches_its_own_hash_only() -> None:
    stored = hash_token(TOKEN)
    assert token_matches(TOKEN, stored)
    assert not token_matches(TOKEN + "x", stored)
    assert not token_matches("", stored)
    assert not token_matches(TOKEN, None)


# --- signatures ----------------------------------------------------------------------


def test_sign_matches_the_rfc_4231_vector_in_padded_base64() -> None:
    expected = base64.b64encode(bytes.fromhex(RFC4231_HEX)).decode()
    assert sign(RFC4231_KEY, RFC4231_DATA) == expected
    assert len(expected) == 44 and expected.endswith("=")


def test_sign_is_standard_base64_of_hmac_sha256_keyed_by_the_token() -> None:
    expected = base64.standard_b64encode(hmac.new(TOKEN.encode(), BODY, hashlib.sha256).digest()).decode()
    assert sign(TOKEN, BODY) == expected


@pytest.mark.parametrize("form", ["base64", "hex", "HEX"])
def test_signature_valid_accepts_base64_and_hex(form: str) -> None:
    digest = bytes.fromhex(RFC4231_HEX)
    signature = {"base64": base64.b64encode(digest).decode(), "hex": RFC4231_HEX, "HEX": RFC4231_HEX.upper()}[form]
    assert signature_valid(RFC4231_KEY, RFC4231_DATA, signature)


def test_signature_of_another_body_is_refused() -> None:
    assert not signature_valid(TOKEN, BODY + b" ", sign(TOKEN, BODY))
    assert not signature_valid(TOKEN, b"", sign(TOKEN, BODY))


def test_signature_with_another_key_is_refused() -> None:
    assert not signature_valid(TOKEN, BODY, sign(TOKEN + "x", BODY))
    other_hex = hmac.new(b"other", BODY, hashlib.sha256).hexdigest()
    assert not signature_valid(TOKEN, BODY, other_hex)


@pytest.mark.parametrize(
    "garbage",
    ["", "not a signature", "!" * 44, "zz" * 32, RFC4231_HEX[:-2], RFC4231_HEX + "00",
     base64.b64encode(bytes.fromhex(RFC4231_HEX)).decode().rstrip("=")],
    ids=["empty", "words", "44-non-base64", "non-hex", "short-hex", "long-hex", "unpadded-base64"],
)
def test_garbage_signature_is_refused(garbage: str) -> None:
    assert not signature_valid(RFC4231_KEY, RFC4231_DATA, garbage)


def test_urlsafe_base64_of_the_right_digest_is_refused() -> None:
    # The first body whose signature uses '+' or '/', the characters urlsafe base64 replaces.
    body = next(b for b in (str(n).encode() for n in range(100)) if set(sign(TOKEN, b)) & {"+", "/"})
    standard = sign(TOKEN, body)
    assert signature_valid(TOKEN, body, standard)
    assert not signature_valid(TOKEN, body, standard.replace("+", "-").replace("/", "_"))


# --- the directory -------------------------------------------------------------------


def deployment(hash_: str = "dep-1") -> Deployment:
    return Deployment(hash=hash_, tenant="acme", user_id="user-1", created_at=T0, enrollment_hash=None)


def agent(agent_id: str = "agent-1", *, token: str = TOKEN, deployment_hash: str = "dep-1",
          status: AgentStatus = AgentStatus.ACTIVE) -> AgentRecord:
    return AgentRecord(id=agent_id, deployment_hash=deployment_hash, token_hash=hash_token(token),
                       status=status, created_at=T0)


def directory(*agents: AgentRecord) -> AgentDirectory:
    found = AgentDirectory()
    found.put_deployment(deployment())
    for record in agents:
        found.put_agent(record)
    return found


@pytest.mark.parametrize("token", [None, ""], ids=["none", "empty"])
def test_authenticate_without_token_is_missing_token(token: str | None) -> None:
    assert directory(agent()).authenticate(token, deployment_hash="dep-1", agent_id="agent-1") \
        is AgentAuthFailure.MISSING_TOKEN


def test_authenticate_with_unknown_token_is_bad_token() -> None:
    assert directory(agent()).authenticate("wrong", deployment_hash="dep-1", agent_id="agent-1") \
        is AgentAuthFailure.BAD_TOKEN


def test_authenticate_with_another_agent_id_is_wrong_agent() -> None:
    other = agent("agent-2", token="other-token")
    assert directory(agent(), other).authenticate(TOKEN, deployment_hash="dep-1", agent_id="agent-2") \
        is AgentAuthFailure.WRONG_AGENT


def test_authenticate_decommissioned_agent_is_decommissioned() -> None:
    found = directory(agent(status=AgentStatus.DECOMMISSIONED))
    assert found.authenticate(TOKEN, deployment_hash="dep-1", agent_id="agent-1") is AgentAuthFailure.DECOMMISSIONED


def test_authenticate_for_another_deployment_is_wrong_deployment() -> None:
    assert directory(agent()).authenticate(TOKEN, deployment_hash="dep-2", agent_id="agent-1") \
        is AgentAuthFailure.WRONG_DEPLOYMENT


@pytest.mark.parametrize(("deployment_hash", "agent_id"), [("dep-1", "agent-1"), (None, None)],
                         ids=["both-given", "neither-checked"])
def test_authenticate_success_returns_the_agent(deployment_hash: str | None, agent_id: str | None) -> None:
    record = agent()
    assert directory(record).authenticate(TOKEN, deployment_hash=deployment_hash, agent_id=agent_id) == record


def test_auth_failures_carry_status_code_and_message() -> None:
    assert (AgentAuthFailure.MISSING_TOKEN.status, AgentAuthFailure.MISSING_TOKEN.code) == (401, "missing_token")
    assert (AgentAuthFailure.WRONG_AGENT.status, AgentAuthFailure.WRONG_AGENT.code) == (401, "invalid_token")
    wrong_deployment, decommissioned = AgentAuthFailure.WRONG_DEPLOYMENT, AgentAuthFailure.DECOMMISSIONED
    assert (wrong_deployment.status, wrong_deployment.code) == (403, "wrong_deployment")
    assert (decommissioned.status, decommissioned.code) == (410, "agent_decommissioned")
    assert all(failure.message for failure in AgentAuthFailure)


def test_put_agent_with_a_new_token_drops_the_old_token() -> None:
    found = directory(agent(token="old-token"))
    renewed = agent(token="new-token")
    found.put_agent(renewed)
    assert found.authenticate("old-token", deployment_hash="dep-1", agent_id="agent-1") is AgentAuthFailure.BAD_TOKEN
    assert found.authenticate("new-token", deployment_hash="dep-1", agent_id="agent-1") == renewed


def test_put_agent_with_the_same_token_keeps_it_working() -> None:
    found = directory(agent())
    decommissioned = agent(status=AgentStatus.DECOMMISSIONED)
    found.put_agent(decommissioned)
    assert found.authenticate(TOKEN, deployment_hash="dep-1", agent_id="agent-1") is AgentAuthFailure.DECOMMISSIONED
    found.put_agent(agent())
    assert found.authenticate(TOKEN, deployment_hash="dep-1", agent_id="agent-1") == agent()


def test_active_agents_and_deployments_of() -> None:
    found = directory(agent("a1", token="t1"), agent("a2", token="t2", status=AgentStatus.DECOMMISSIONED),
                      agent("a3", token="t3", deployment_hash="dep-2"))
    found.put_deployment(Deployment(hash="dep-3", tenant="other", user_id="u", created_at=T0, enrollment_hash=None))
    assert [a.id for a in found.active_agents("dep-1")] == ["a1"]
    assert [d.hash for d in found.deployments_of("acme")] == ["dep-1"]


# --- retired agents ------------------------------------------------------------------


def enrolled(n: int, *, at: float = T0) -> AgentRecord:
    return AgentRecord(id=f"a{n}", deployment_hash="dep-1", token_hash=hash_token(f"token-{n}"),
                       status=AgentStatus.ACTIVE, created_at=at + n, system_info={"host": "x" * 100})


def test_a_retired_agent_keeps_no_system_info_and_its_token_answers_decommissioned() -> None:
    retired = enrolled(1).retire(T0 + 50)
    assert (retired.status, retired.decommissioned_at, retired.system_info) == (
        AgentStatus.DECOMMISSIONED, T0 + 50, {})
    # One loaded as an earlier version stored it loses its system info too.
    found = directory(attrs.evolve(enrolled(2), status=AgentStatus.DECOMMISSIONED, decommissioned_at=T0 + 60))
    assert found.agents["a2"].system_info == {}
    found.put_agent(retired)
    assert found.authenticate("token-1", deployment_hash="dep-1", agent_id="a1") is AgentAuthFailure.DECOMMISSIONED


def test_retired_agents_come_apart_from_active_ones_newest_first_in_pages() -> None:
    found = directory(*(enrolled(n).retire(T0 + 100 + n) for n in range(10)), enrolled(10))
    assert [a.id for a in found.active_agents("dep-1")] == ["a10"] and found.retired_count("dep-1") == 10
    pages = [found.retired_agents("dep-1", limit=4, offset=offset) for offset in (0, 4, 8, 12)]
    assert [[a.id for a in page] for page in pages] == [["a9", "a8", "a7", "a6"], ["a5", "a4", "a3", "a2"],
                                                        ["a1", "a0"], []]
    assert [a.id for a in found.agents_of("dep-1")] == [f"a{n}" for n in range(11)]
    assert found.retired_count("dep-2") == 0 and found.retired_agents("dep-2", limit=5, offset=0) == []


def test_retired_agents_past_the_cutoff_are_found_and_forgotten() -> None:
    found = directory(*(enrolled(n).retire(T0 + 1000 * n) for n in range(5)), enrolled(5))
    published = found.snapshot()
    old = found.retired_before(T0 + 2500, limit=10)
    assert sorted(a.id for a in old) == ["a0", "a1", "a2"]
    assert len(found.retired_before(T0 + 2500, limit=2)) == 2
    for record in old:
        found.forget_agent(record.id)
    assert found.authenticate("token-0", deployment_hash="dep-1", agent_id="a0") is AgentAuthFailure.BAD_TOKEN
    assert [a.id for a in found.retired_agents("dep-1", limit=10, offset=0)] == ["a4", "a3"]
    assert found.retired_count("dep-1") == 2 and [a.id for a in found.active_agents("dep-1")] == ["a5"]
    # A snapshot taken before is untouched.
    assert published.retired_count("dep-1") == 5
    assert published.authenticate("token-0", deployment_hash="dep-1",
                                  agent_id="a0") is AgentAuthFailure.DECOMMISSIONED
    found.forget_agent("a-never-known")  # nothing to do


def test_retired_agents_beyond_a_deployments_newest_are_found() -> None:
    found = directory(*(enrolled(n).retire(T0 + 100 + n) for n in range(6)), enrolled(6))
    assert [a.id for a in found.retired_beyond(4, limit=10)] == ["a0", "a1"]  # the earliest enrolled
    assert [a.id for a in found.retired_beyond(4, limit=1)] == ["a0"]
    assert found.retired_beyond(6, limit=10) == []


def test_a_table_kept_by_agent_id_outgrows_twice_the_agents_known_and_some() -> None:
    from trioscope.domain.deployments import SPARE_ENTRIES, AgentDirectory

    directory = AgentDirectory()
    assert not directory.outgrown(SPARE_ENTRIES) and directory.outgrown(SPARE_ENTRIES + 1)


def test_an_enrollment_spends_the_token_and_replaces_the_deployments_agents_once_stored() -> None:
    found = directory(agent("old-1"), agent("old-2", token="another-token-0123456789abcdefghijklmn"))
    found.put_deployment(attrs.evolve(deployment(), enrollment_hash=hash_token("enroll-me")))
    assert found.enrollment("dep-1", "not-it", agent_id="new", token_hash="h", now=T0 + 5) is None
    assert found.enrollment("dep-2", "enroll-me", agent_id="new", token_hash="h", now=T0 + 5) is None

    enrollment = found.enrollment("dep-1", "enroll-me", agent_id="new", token_hash=hash_token(TOKEN + "x"),
                                  now=T0 + 5, capabilities=("docker",), version="1.0", system_info={"os": "linux"})
    assert enrollment is not None
    assert enrollment.spent.enrollment_hash is None and enrollment.deployment.enrollment_hash is not None
    assert (enrollment.agent.id, enrollment.agent.status, enrollment.agent.created_at) == ("new", AgentStatus.ACTIVE,
                                                                                          T0 + 5)
    assert {(a.id, a.status, a.decommissioned_at) for a in enrollment.retired} == {
        ("old-1", AgentStatus.DECOMMISSIONED, T0 + 5), ("old-2", AgentStatus.DECOMMISSIONED, T0 + 5)}
    assert [a.id for a in found.active_agents("dep-1")] == ["old-1", "old-2"]  # nothing changed until stored

    found.enrolled(enrollment)
    assert [a.id for a in found.active_agents("dep-1")] == ["new"]
    assert found.deployments["dep-1"].enrollment_hash is None
    assert found.enrollment("dep-1", "enroll-me", agent_id="again", token_hash="h", now=T0 + 6) is None  # spent
    assert found.authenticate(TOKEN, deployment_hash="dep-1", agent_id="old-1") is AgentAuthFailure.DECOMMISSIONED
