"""Probe vouching: the agent signing a probe's report, registration or
heartbeat, which probe agent ids it may speak for (membership of a deployment
is proven, never claimed), and when an enrolled agent's claim on an id lapses."""

from __future__ import annotations

import logging
import time

from trioscope.actors.directory import AttachReporter, ReleaseReporter
from trioscope.actors.refusals import ReporterTaken
from trioscope.actors.topology import ReporterSilent
from trioscope.domain.deployments import AgentDirectory, AgentRecord
from trioscope.domain.topology import node_scope
from trioscope.wire import request_signing

from ._audit_entries import refuse
from ._client_address import current_connection
from ._directory import directory
from ._gate import agent
from ._services import services
from ._tokens import bearer

log = logging.getLogger(__name__)


async def probe_credentials(raw_body: bytes) -> AgentRecord | None:
    """The enrolled agent signing a probe's report or registration, checked as
    on the agent API (token, signature, clock, request id: refusals audited);
    None for an unsigned request. Checked before the body is decoded."""
    headers = current_connection().headers
    if bearer() is None and not request_signing.is_signed(headers) and "X-Agent-Signature" not in headers:
        return None
    return await agent(None, raw_body)


async def signer_scope(signer: AgentRecord | None) -> str | None:
    """The ``node_scope`` of the tenant whose deployment ``signer`` is
    enrolled in, which the ids of the nodes it reports carry (None: unsigned,
    or its deployment is gone)."""
    if signer is None:
        return None
    deployment = (await directory()).deployments.get(signer.deployment_hash)
    return node_scope(deployment.tenant) if deployment is not None else None


async def vouch(reporter_id: str, signer: AgentRecord | None, claimed_deployment: str | None = None, *,
                attach: bool = True) -> None:
    """Whether probe agent id ``reporter_id`` may report (or register) with this
    signer. Deployment membership is proven, never claimed: a signed request
    attaches ``reporter_id`` to the signer's deployment (its nodes then offer
    controls, delivered to that agent); an unsigned one belongs to no
    deployment, so it may neither claim one nor speak for a probe agent id that
    an enrolled agent reports under. ``attach`` False (a heartbeat) checks the
    same without attaching. Refusals are audited, with no tenant: the claims
    in them are unverified.

    Raises:
        ApiError: 401 ``unauthenticated_deployment`` or ``signature_required``,
            403 ``wrong_deployment``; ``ReporterTaken`` (409) if another enrolled
            agent reports under ``reporter_id``.
    """
    found = await directory()
    if signer is None:
        if claimed_deployment is not None:
            raise refuse(401, "unauthenticated_deployment",
                         "a registration that names a deployment must be signed with that deployment's agent "
                         "credentials (enroll the probe with --deployment-hash and --enrollment-token-file)",
                         action="auth.failure", tenant=None, actor="anonymous", reporter_id=reporter_id,
                         deployment_hash=claimed_deployment)
        holder = found.reporting_agent(reporter_id)
        if holder is not None:
            if not attach or not await _claim_lapsed(reporter_id):
                raise refuse(401, "signature_required",
                             f"agent {reporter_id!r} reports for an enrolled agent: its reports, registrations and "
                             "heartbeats must be signed with that agent's credentials", action="auth.failure",
                             tenant=None, actor="anonymous", reporter_id=reporter_id)
            await services().directory.ask(ReleaseReporter(reporter_id), timeout=10.0)
            _claim_taken(reporter_id, holder, None)
        return
    if claimed_deployment is not None and claimed_deployment != signer.deployment_hash:
        raise refuse(403, "wrong_deployment", "the agent credentials belong to another deployment",
                     action="auth.denied", tenant=None, actor=f"agent:{signer.id}", reporter_id=reporter_id,
                     deployment_hash=claimed_deployment)
    holder = found.reporting_agent(reporter_id)
    if holder is None or holder.id != signer.id:
        if not attach:  # a heartbeat: it keeps a probe alive, it does not make it the signer's
            if holder is not None:
                raise ReporterTaken(reporter_id)
            return
        lapsed = holder is not None and await _claim_lapsed(reporter_id)
        await services().directory.ask(AttachReporter(reporter_id, signer.id, lapsed=lapsed), timeout=10.0)
        if lapsed:
            assert holder is not None
            _claim_taken(reporter_id, holder, signer)


CLAIM_CHECK_EVERY = 10.0
"""Seconds the topology's word on a claim (``_claim_lapsed``) is taken for at
most: no longer than ``agents.stale_threshold`` itself, so that a claim lapses
at most one threshold late."""


async def _claim_lapsed(reporter_id: str) -> bool:
    """Whether the enrolled agent that reports under ``reporter_id`` stopped:
    nothing was reported under it for ``agents.stale_threshold`` (the
    topology's say, asked at most once per ``CLAIM_CHECK_EVERY``). One signed
    report of another tenant's agent under a host's id held it for good: that
    host's enrolled probe got 409 and its unsigned one 401 until the server
    restarted."""
    s = services()
    now = time.monotonic()
    checked = s.gate.claims_checked.get(reporter_id)
    if checked is not None and now - checked[0] < min(CLAIM_CHECK_EVERY, s.settings.agents.stale_threshold):
        return checked[1]
    lapsed = bool(await s.topology.ask(ReporterSilent(reporter_id), timeout=10.0))
    checks = s.gate.claims_checked
    if (s.gate.directory.value if s.gate.directory else AgentDirectory()).outgrown(len(checks)):
        checks.clear()  # ids no longer claimed: one entry per claim at most, and claims are the agents'
    checks[reporter_id] = (now, lapsed)
    return lapsed


def _claim_taken(reporter_id: str, holder: AgentRecord, signer: AgentRecord | None) -> None:
    services().gate.claims_checked.pop(reporter_id, None)  # the new holder's claim is asked about anew
    log.warning("probe agent id %s: enrolled agent %s reported nothing under it for agents.stale_threshold; %s "
                "reports under it now", reporter_id[:80], holder.id,
                f"enrolled agent {signer.id}" if signer is not None else "an unsigned probe",
                extra={"event": "reporter_claim_lapsed", "agent_id": reporter_id[:80], "holder": holder.id,
                       "signer": signer.id if signer is not None else None})
