"""What a refused agent request is told, against a real server: a malformed
header is named with the format it needs (not mistaken for a clock problem),
and a missing part is named in the terms of the signature scheme the request
used (RFC 9421 over the whole request, or the status agent's body-only HMAC)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.test_commands import Operator, enroll, fresh
from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent
from trioscope.wire import request_signing

BODY_ONLY = ("X-Timestamp", "X-Request-Id", "X-Agent-Signature")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess() as process:
        yield process


async def _agent(server: ServerProcess, client: httpx.AsyncClient) -> StatusAgent:
    return await enroll(client, server, Operator(server, fresh("user"), fresh("tenant")))


def _wait_path(agent: StatusAgent) -> str:
    return f"/api/v1/agent/commands/wait/{agent.deployment_hash}?timeout=1"


def _rfc_9421(server: ServerProcess, agent: StatusAgent, *, now: float | None = None) -> dict[str, str]:
    """Headers of a GET of the poll path signed as the probe signs it."""
    headers = {"Authorization": f"Bearer {agent.token}", "X-Agent-Id": agent.agent_id}
    request_signing.sign("GET", server.base_url + _wait_path(agent), headers, b"", agent_id=agent.agent_id,
                         token=agent.token, now=time.time() if now is None else now, nonce=str(uuid.uuid4()))
    return headers


def _error(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


@pytest.mark.parametrize("timestamp", ["1733300000.5", "+1733300000", "1_733_300_000", "yesterday"])
async def test_a_malformed_x_timestamp_is_named_with_the_format_it_needs(server: ServerProcess,
                                                                         timestamp: str) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        agent = await _agent(server, client)
        if timestamp != "yesterday":  # the time itself is right: only its spelling is refused
            timestamp = timestamp.replace("1733300000", str(int(time.time()))).replace(
                "1_733_300_000", f"{int(time.time()):_}")
        status, code, message = _error(await agent.wait(client, timeout=1, **{"X-Timestamp": timestamp}))
        assert (status, code) == (400, "invalid_timestamp"), message
        assert message.startswith("X-Timestamp must be unix seconds") and "whole number" in message
        assert (await agent.wait(client, timeout=1)).status_code == 204  # the same agent, spelled right


async def test_a_far_off_but_well_formed_x_timestamp_is_still_clock_skew(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        agent = await _agent(server, client)
        for timestamp in (str(int(time.time()) - 301), "9" * 40):
            status, code, _ = _error(await agent.wait(client, timeout=1, **{"X-Timestamp": timestamp}))
            assert (status, code) == (401, "clock_skew"), timestamp


async def test_an_rfc_9421_request_without_x_agent_id_is_told_that(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        agent = await _agent(server, client)
        headers = {k: v for k, v in _rfc_9421(server, agent).items() if k != "X-Agent-Id"}
        status, code, message = _error(await client.get(_wait_path(agent), headers=headers))
        assert (status, code) == (401, "missing_signature")
        assert message.startswith("missing X-Agent-Id: ") and "RFC 9421" in message
        assert not [name for name in BODY_ONLY if name in message], message  # the other scheme's headers
        no_digest = {k: v for k, v in _rfc_9421(server, agent).items() if k != "Content-Digest"}
        assert _error(await client.get(_wait_path(agent), headers=no_digest))[2].startswith("missing Content-Digest: ")


async def test_a_body_only_request_is_told_which_of_its_headers_are_missing(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        agent = await _agent(server, client)
        headers = {k: v for k, v in agent.headers(b"").items() if k not in ("X-Request-Id", "X-Agent-Id")}
        status, code, message = _error(await client.get(_wait_path(agent), headers=headers))
        assert (status, code) == (401, "missing_signature")
        assert message.startswith("missing X-Agent-Id and X-Request-Id: ") and "X-Agent-Signature" in message
        assert "Signature-Input" not in message


async def test_an_unsigned_request_is_told_both_ways_to_sign(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        agent = await _agent(server, client)
        headers = {"Authorization": f"Bearer {agent.token}", "X-Agent-Id": agent.agent_id}
        status, code, message = _error(await client.get(_wait_path(agent), headers=headers))
        assert (status, code) == (401, "missing_signature")
        assert message.startswith("the request is not signed: ")
        assert "Signature-Input" in message and "X-Agent-Signature" in message


async def test_rfc_9421_clock_skew_names_the_signatures_created_time(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        agent = await _agent(server, client)
        skewed = _rfc_9421(server, agent, now=time.time() + 400)
        status, code, message = _error(await client.get(_wait_path(agent), headers=skewed))
        assert (status, code) == (401, "clock_skew")
        assert "created" in message and "X-Timestamp" not in message, message
