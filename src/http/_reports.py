"""Report submission: validate on the request path, merge in the actors."""

from __future__ import annotations

import time

from quart import Blueprint, Response

from trioscope.actors.agent import ReportReceived
from trioscope.actors.hub import ReportSeen
from trioscope.actors.topology import MergeReport
from trioscope.domain.agents import check_clock, rfc3339
from trioscope.runtime import MailboxFull
from trioscope.domain.report import InvalidDocument, decode_report

from ._agents import ensure_agent
from ._bodies import invalid, parse_json, read_body
from ._responses import json_response
from ._services import services

blueprint = Blueprint("reports", __name__)


@blueprint.post("/api/v1/reports")
async def submit_report() -> Response:
    """Submit a report (JSON, gzip allowed): 202 once queued for merging."""
    s = services()
    body = await read_body(s.settings)
    document = parse_json(body)
    received_at = time.time()
    try:
        report = decode_report(document)
        check_clock(report, received_at)
    except InvalidDocument as exc:
        raise invalid("invalid_report", exc) from None
    agent = ensure_agent(report.agent_id)
    # Topology first: when its mailbox is full we answer 503 and the probe
    # resends; merging the same report twice changes nothing.
    s.topology.tell(MergeReport(report, received_at))
    agent.tell(ReportReceived(report, body, received_at))
    s.metrics.reports_received.inc()
    try:
        s.hub.tell(ReportSeen(report, received_at))
    except MailboxFull:
        pass  # a live "report_update" is a courtesy; the report itself is accepted
    return json_response(
        {"status": "accepted", "message": "Report processed successfully",
         "agent_id": report.agent_id, "received_at": rfc3339(received_at)},
        status=202,
    )
