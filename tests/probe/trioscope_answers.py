"""What a trioscope server answers the probe, for the tests' stand-ins of it
(``httpx.MockTransport`` handlers): the probe takes a command's report as
delivered on this answer only (``_refusals.report_taken``), not on any 200."""

from __future__ import annotations

import json

import httpx


def report_taken(request: httpx.Request) -> httpx.Response:
    """The server's answer to ``request``, a command's report that it took."""
    command_id = json.loads(request.content)["command_id"]
    return httpx.Response(200, json={"message": "Result accepted", "status": "accepted",
                                     "item": {"accepted": True, "command_id": command_id, "command_status": None}})
