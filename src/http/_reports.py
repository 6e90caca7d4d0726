"""Report submission: validate on the request path, then one message to the
roster actor, which hands the report to the topology, the agent's actor and the hub.

With a bus (``bus.url``) the validated report goes to the report stream
instead, and comes back to every replica's roster through its report feed; 202
only once the stream has it, 503 with Retry-After when the bus does not take it.
The roster is asked whether it would admit a new agent before the report is
published (503 too_many_agents, as without a bus) but admits it, making room
by the same rule, only as each replica reads the report from the stream: a
report the bus did not take starts and forgets no agent anywhere; one that
was admitted when asked but found no place when read back here (a burst of
new agents, each asked before any was read) is answered 503 too, not 202. An
envelope the NATS server would refuse (its ``max_payload``) is answered 413
rather than 503 for ever."""

from __future__ import annotations

import contextlib
import time

from quart import Blueprint, Response

from trioscope.actors.refusals import TooManyAgents
from trioscope.actors.roster import CheckAdmission, ReportArrived
from trioscope.bus import BusUnavailable, ReportTooLarge, pack_report
from trioscope.domain.agents import PackedReport, check_clock
from trioscope.wire import InvalidDocument, OverBudget, Report, decode_report, rfc3339_seconds
from trioscope.domain.topology import Partition, build_partition, report_shape

from . import _client_address, _probe_vouching, _rate_checks
from ._bodies import OFF_LOOP_BYTES, in_worker, invalid, parse_json, read_body_and_raw
from ._errors import ApiError
from ._memory_budget import memory_budget
from ._openapi import STRING, TIME, Answer, Auth, documented, fields
from ._probe_actors import ask_roster
from ._responses import json_response
from ._services import Services, services

blueprint = Blueprint("reports", __name__)


def _decode(body: bytes, received_at: float) -> Report:
    """The valid report in ``body``; not yet fitted to the budget (``_fit_budget``),
    but refused (413) before it is decoded when even the least it may take
    is over it (``MemoryBudget.check_document``: a 10 MB report of 68,000
    client connections had its 413 after 0.3-0.5 s of decoding and counting
    in the worker thread, holding the GIL; now after 0.11-0.16 s, most of
    it receiving and parsing)."""
    document = parse_json(body)
    try:
        memory_budget(services().settings).check_document(document, len(body))
    except OverBudget as exc:
        raise _over_budget(exc) from None
    try:
        report = decode_report(document)
        check_clock(report, received_at)
    except InvalidDocument as exc:
        raise invalid("invalid_report", exc) from None
    return report


def _accept(body: bytes, received_at: float) -> tuple[Report, PackedReport]:
    """The report in ``body``, and the body packed as the agent's actor keeps it,
    fitted to the budget together: the packed body holds keys the report model
    does not know (a report of them passed at an eighth of their size)."""
    report = _decode(body, received_at)
    packed = PackedReport.pack(body)
    _fit_budget(report, body, packed)
    return report, packed


def _fit_budget(report: Report, body: bytes, packed: PackedReport) -> None:
    """413 for a report over its agent's memory budget, before any actor
    holds it. (In the worker thread too: it runs in a copy of the request's
    context, where ``services()`` is found.)"""
    budget = memory_budget(services().settings)
    try:
        budget.check(report, body, len(packed.data))
    except OverBudget as exc:
        raise _over_budget(exc) from None


def _over_budget(exc: OverBudget) -> ApiError:
    """The 413 for a report over the budget (its estimate, or the least it may take)."""
    return ApiError(413, "memory_budget_exceeded", f"{exc} (agents.memory_budget)", details={
        "key": "agents.memory_budget", "limit_bytes": exc.limit, "estimate_bytes": exc.footprint.bytes,
        **{k: v for k, v in exc.footprint.as_dict().items() if k != "bytes"}})


BUS_RETRY_AFTER = 2
"""Seconds a probe is told to wait before resending a report the bus did not take."""
OWN_REPORT_WAIT = 1.0
"""Seconds a 202 waits at most for the report to come back from the stream to
this replica's topology (more only while the replica is far behind: the
report is acknowledged by the stream already, so the 202 goes anyway)."""


def _envelope(body: bytes, received_at: float, signer: str | None, address: str,
              scope: str | None) -> tuple[Report, bytes, PackedReport, bytes]:
    report = _decode(body, received_at)
    shape = report_shape(report)
    # The bus carries the report re-encoded (keys it does not know left out):
    # what every replica's actor for the agent keeps is that, charged as it is.
    envelope, packed = pack_report(report, received_at, signer is not None, shape, address, signer, scope)
    _fit_budget(report, body, packed)
    return report, envelope, packed, shape


def _prepare(body: bytes, received_at: float, enrolled: bool,
             scope: str | None) -> tuple[Report, Partition, PackedReport]:
    report, packed = _accept(body, received_at)
    return report, build_partition(report, received_at, enrolled=enrolled, scope=scope), packed


@blueprint.post("/api/v1/reports")
@documented(auth=Auth.PROBE, body=Report, answers={202: Answer("queued for merging", schema=fields(
                status={"const": "accepted"}, message=STRING, agent_id=STRING, received_at=TIME))},
            errors={409: "the agent id belongs to another enrolled agent",
                    413: "the body is over server.max_body_size (also after gzip), the report over "
                         "agents.memory_budget, or (with a bus) its compressed envelope over the NATS "
                         "server's max_payload",
                    503: "the report bus did not take it (bus_unavailable, Retry-After): resend; no room "
                         "for a new agent (too_many_agents); or the bodies being received from its address, or "
                         "from all, are at their budget (body_budget_exceeded, Retry-After)"})
async def submit_report() -> Response:
    """Submit a report (JSON, gzip allowed): 202 once queued for merging (with a bus: once on the stream)."""
    await _rate_checks.check_report_rate()  # before the body is read
    # Its body counts against the budgets of bodies being received until the
    # report is handed on: a large one waits for the one decode thread.
    with contextlib.ExitStack() as held:
        return await _submit(*await read_body_and_raw(services().settings, hold=held))


async def _submit(body: bytes, raw: bytes) -> Response:
    s = services()
    signer = await _probe_vouching.probe_credentials(raw)  # before the work of decoding
    scope = await _probe_vouching.signer_scope(signer)
    received_at = time.time()
    address = _client_address.client_source()
    if s.bus is not None:
        signed_by = None if signer is None else signer.id
        if len(body) > OFF_LOOP_BYTES:
            report, envelope, packed, shape = await in_worker(
                _envelope, body, received_at, signed_by, address, scope, limiter=s.heavy_work)
        else:
            report, envelope, packed, shape = _envelope(body, received_at, signed_by, address, scope)
        await _probe_vouching.vouch(report.agent_id, signer)
        try:
            s.bus.check_fits(envelope)
            # Whether the agent would have a place, as without a bus (503
            # too_many_agents): published unasked, a report over
            # agents.max_agents had its 202 and was left out by every replica.
            # Only asked: the place is taken (room made) as every replica reads
            # the report from the stream, so a report the bus refuses takes
            # none here, pushes no one out, and the replicas keep the same
            # agents. A probe with an actor here has its place (asked only for
            # new ones: one ask fewer on every report of the hot path).
            if s.agents.actor(report.agent_id) is None:
                await ask_roster(CheckAdmission(report.agent_id, enrolled=signer is not None, address=address,
                                                signer=signed_by))
            sequence = await s.bus.publish_report(report, received_at, signer is not None, envelope, packed, shape,
                                                  address, signed_by, scope)
        except BusUnavailable as exc:
            raise ApiError(503, "bus_unavailable", f"the report bus did not acknowledge the report ({exc}); resend it "
                           "(a report merged twice changes nothing)",
                           headers={"Retry-After": str(BUS_RETRY_AFTER)}) from None
        except ReportTooLarge as exc:
            # Resending it changes nothing: 413, on which a probe sends a smaller report.
            where = "in the NATS server's configuration" if exc.stream is None else "of the stream"
            raise ApiError(413, "payload_too_large", f"{exc}; send a smaller report, or raise {exc.setting} {where}",
                           details={
                               "key": exc.key, "limit_bytes": exc.limit, "envelope_bytes": exc.size}) from None
        # The report is safe on the stream; waiting (briefly) for it to come
        # back here keeps what a client reads after its 202 from this replica
        # what it would be without a bus: its own report is in the topology.
        await s.bus.progress.wait_handed_on(sequence, OWN_REPORT_WAIT)
        if s.bus.progress.refused_here(sequence):
            # Admitted when asked, then no place left when read back (a burst of
            # new agents, each asked before any was read): 202'd, every replica
            # left it out. Refused as without a bus; the probe resends.
            s.metrics.refused("agents_full")
            raise TooManyAgents(s.settings.agents.max_agents)
        return _accepted(s, report, received_at)
    partition: Partition | None = None
    if len(body) > OFF_LOOP_BYTES:
        # One at a time: with the GIL a second thread adds memory, not speed.
        report, built, packed = await in_worker(_prepare, body, received_at, signer is not None, scope,
                                                limiter=s.heavy_work)
        partition, shape = built, built.shape
    else:
        report, packed = _accept(body, received_at)
        if s.agents.actor(report.agent_id) is None and len(s.agents) < s.settings.agents.max_agents:
            # A probe new here (as every probe is when the server or a fleet
            # restarts): its nodes are all built anew, ~3x what accepting the
            # report costs, so in its request rather than in the topology
            # actor, every report's one queue: a burst of new probes no longer
            # leaves seconds of merging behind it for the reads to wait on.
            # (Not when the probes fill --max-agents: the roster may refuse it.)
            partition = build_partition(report, received_at, enrolled=signer is not None, scope=scope)
            shape = partition.shape
        else:
            shape = report_shape(report)  # here, in the request: the topology actor is every report's one queue
    await _probe_vouching.vouch(report.agent_id, signer)
    # One message: the roster starts the probe's actor if it is new and hands
    # the report to the topology, that actor and the hub (503 when one is full).
    await ask_roster(ReportArrived(report, packed, received_at, partition, shape, enrolled=signer is not None,
                                   address=address, signer=None if signer is None else signer.id, scope=scope))
    return _accepted(s, report, received_at)


def _accepted(s: Services, report: Report, received_at: float) -> Response:
    s.metrics.reports_received.inc()
    return json_response(
        {"status": "accepted", "message": "Report processed successfully",
         "agent_id": report.agent_id, "received_at": rfc3339_seconds(received_at)},
        status=202,
    )
