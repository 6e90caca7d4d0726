"""What the probe logs is what an operator can act on, one line each: a
command refused says why before any engine is asked, a follow that failed
says so, and what another server (or a proxy) answered cannot break the
probe's lines nor pass for a registration."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from tests.probe.trioscope_answers import report_taken
from trioscope_probe._agent import CommandAgent, Credentials, enroll
from trioscope_probe._executor import ControlError
from trioscope_probe._refusals import ServerUnavailable, error_of
from trioscope_probe._transport import Publisher

CREDENTIALS = Credentials("dep", "agent-1", "token-1")


def _agent(statuses: list[dict[str, Any]]) -> CommandAgent:
    def server(request: httpx.Request) -> httpx.Response:
        statuses.append(json.loads(request.content))
        return report_taken(request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(server), base_url="http://server")
    return CommandAgent(client, CREDENTIALS, docker_host="tcp://127.0.0.1:1")


@pytest.mark.parametrize(("kind", "why"), [
    ("docker.exec", "command type 'docker.exec' is not allowed on this probe"),
    ("weird.thing", "unknown command type 'weird.thing'"),
])
async def test_a_command_this_probe_does_not_run_is_refused_saying_why_without_an_engine(
        kind: str, why: str, caplog: pytest.LogCaptureFixture) -> None:
    statuses: list[dict[str, Any]] = []
    agent = _agent(statuses)

    def engine(*_args: Any) -> dict[str, Any]:
        raise AssertionError("the engine was asked")

    agent._execute = engine  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    await agent._run_command({"command_id": "cmd_1", "type": kind, "parameters": {"container": "c1"},
                              "timeout_seconds": 30})
    assert [s["status"] for s in statuses] == ["failed"] and why in statuses[0]["error"]
    assert f"refused {kind} (cmd_1): {why}" in caplog.text and "running" not in caplog.text


async def test_a_follow_that_could_not_start_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    statuses: list[dict[str, Any]] = []
    agent = _agent(statuses)
    await agent._run_command({"command_id": "cmd_2", "type": "docker.logs",
                              "parameters": {"container": "c1", "follow": True}, "timeout_seconds": 5})
    assert [s["status"] for s in statuses] == ["failed"]
    assert "docker.logs (cmd_2) failed" in caplog.text


def test_another_servers_page_is_one_line_of_printable_text() -> None:
    page = "<!DOCTYPE HTML>\n<html>\r\n  <body>\x1b[31mERROR trioscope_probe: forged</body>\n</html>\n"
    code, message = error_of(httpx.Response(501, text=page))
    assert code == "" and "\n" not in message and "\r" not in message and "\x1b" not in message
    assert message.startswith("<!DOCTYPE HTML> <html> <body>")


async def test_a_registration_answered_by_no_trioscope_is_not_taken_for_one() -> None:
    """A 501 of another server at --server: the probe waits and asks again, never says it connected."""
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(501, text="<html>")),
                               base_url="http://server")
    publisher = Publisher(client, "probe-1", "host", 10)
    with pytest.raises(ServerUnavailable, match="registration answered 501"):
        await publisher.register()
    assert not publisher.registered


async def test_why_the_server_is_unavailable_is_named_when_it_says() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/reports"):
            return httpx.Response(503, json={"error": {"code": "bus_unavailable", "message": "the bus is away"}})
        return httpx.Response(201 if "register" in request.url.path else 200, json={})

    publisher = Publisher(httpx.AsyncClient(transport=httpx.MockTransport(server), base_url="http://server"),
                          "probe-1", "host", 10)
    publisher.outbox.reports.append(b"{}")
    with pytest.raises(ServerUnavailable, match="/api/v1/reports answered 503 bus_unavailable"):
        await publisher.flush()


async def test_an_enrollment_refused_by_another_servers_page_is_one_line() -> None:
    page = "<html>\nERROR trioscope_probe: forged line\n</html>"
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(404, text=page)),
                               base_url="http://server")
    with pytest.raises(ControlError) as refused:
        await enroll(client, "dep", "enrollment-token", [])
    assert "\n" not in str(refused.value) and "forged line" in str(refused.value)
