"""CORS at the protocol level: preflights, the headers on answers (errors
too), the WebSocket origin check, and the refused configuration."""

from __future__ import annotations

import httpx
import pytest
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.server_process import ServerProcess, run_cli

ORIGIN = "https://ops.example.com"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}


def test_a_preflight_from_a_listed_origin_gets_204_and_the_allow_headers():
    with ServerProcess(["--cors-origins", f"{ORIGIN},http://localhost:3000"]) as server:
        answer = httpx.options(f"{server.base_url}/api/v1/users/alice/deployments", headers=PREFLIGHT)
        assert answer.status_code == 204 and answer.content == b""
        assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Origin" in answer.headers["Vary"]
        assert "POST" in answer.headers["Access-Control-Allow-Methods"]
        allowed = {h.strip().lower() for h in answer.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type"} <= allowed
        assert int(answer.headers["Access-Control-Max-Age"]) > 0
        assert "Access-Control-Allow-Credentials" not in answer.headers

        refused = httpx.options(f"{server.base_url}/api/v1/users/alice/deployments",
                                headers={**PREFLIGHT, "Origin": "https://evil.example"})
        assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers
        assert refused.json()["error"]["code"] == "cors_origin_not_allowed"


def test_answers_to_a_listed_origin_carry_the_headers_errors_included():
    with ServerProcess(["--cors-origins", ORIGIN, "--cors-allow-credentials", "true"]) as server:
        ok = httpx.get(f"{server.base_url}/health", headers={"Origin": ORIGIN})
        assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN and ok.headers["Vary"] == "Origin"
        assert ok.headers["Access-Control-Allow-Credentials"] == "true"
        assert "X-Request-Id" in ok.headers["Access-Control-Expose-Headers"]
        refused = httpx.get(f"{server.base_url}/api/v1/users/me", headers={"Origin": ORIGIN})
        assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == ORIGIN
        other = httpx.get(f"{server.base_url}/health", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers and other.headers["Vary"] == "Origin"


def test_off_by_default():
    with ServerProcess() as server:
        answer = httpx.options(f"{server.base_url}/api/v1/users/alice/deployments", headers=PREFLIGHT)
        assert answer.status_code == 403 and "Access-Control-Allow-Origin" not in answer.headers
        plain = httpx.get(f"{server.base_url}/health", headers={"Origin": ORIGIN})
        assert "Access-Control-Allow-Origin" not in plain.headers


async def test_websockets_from_browsers_only_from_the_servers_own_pages_or_listed_origins():
    with ServerProcess(["--cors-origins", ORIGIN]) as server:
        url = server.base_url.replace("http://", "ws://") + "/api/v1/ws?view=hosts"
        for origin in (server.base_url, ORIGIN):
            async with open_websocket_url(url, extra_headers=[("Origin", origin)]) as ws:
                assert await ws.get_message()
        async with open_websocket_url(url) as ws:  # programs send no Origin
            assert await ws.get_message()
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(url, extra_headers=[("Origin", "https://evil.example")]):
                pass
        assert rejected.value.status_code == 403
        assert b"websocket_origin_not_allowed" in rejected.value.body


def test_a_request_that_changes_anything_is_taken_only_from_the_servers_own_pages_or_listed_origins():
    """A page elsewhere could make a browser post a probe's registration with
    no preflight (``fetch`` in ``no-cors`` mode, a body of no type)."""
    registration = b'{"agent_id": "evil-1", "hostname": "evil"}'
    with ServerProcess(["--cors-origins", ORIGIN]) as server:
        url = f"{server.base_url}/api/v1/agents/register"
        refused = httpx.post(url, content=registration, headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "cors_origin_not_allowed"
        assert httpx.post(url, content=registration, headers={"Origin": "null"}).status_code == 403  # a file:// page
        for origin in (server.base_url, ORIGIN):
            taken = httpx.post(url, content=registration, headers={"Origin": origin})
            assert taken.status_code == 201, (origin, taken.text)
        assert httpx.post(url, content=registration).status_code == 201  # programs send no Origin
        # Reads are not concerned: a script elsewhere reads their answers only where CORS allows it.
        assert httpx.get(f"{server.base_url}/api/v1/agents/list", headers={"Origin": "https://evil.example"}
                         ).status_code == 200
        listed = httpx.get(f"{server.base_url}/api/v1/agents/list").json()
        assert listed["count"] == 1


def test_any_origin_with_credentials_does_not_start():
    done = run_cli(["serve", "--port", "0", "--cors-origins", "*", "--cors-allow-credentials", "true"])
    assert done.returncode == 2
    assert "trioscope: configuration error: server.cors_origins: * (from flag --cors-origins) cannot go with " \
           "server.cors_allow_credentials true" in done.stderr
