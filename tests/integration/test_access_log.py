"""The access log (--access-log), request ids, and the client address through
trusted proxies, as an operator reads them in the server's log."""

from __future__ import annotations

import json
import socket

import httpx
import orjson
import pytest
from trio_websocket import open_websocket_url

from tests.server_process import ServerProcess, run_cli

QUERY_SECRET = "query-secret-0123456789"


def _access_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "trioscope.access" in line]


async def _requests(server: ServerProcess, token: str) -> None:
    """What a browser and a script do: an authenticated read, a read with a
    secret in its query, a WebSocket with its token in the URL."""
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}",
                                                           "X-Request-Id": "req-abc.123"})
        assert me.status_code == 200 and me.headers["X-Request-Id"] == "req-abc.123"
        listing = await client.get(f"/api/v1/query/topology?view=hosts&token={QUERY_SECRET}",
                                   headers={"Authorization": f"Bearer {token}"})
        assert listing.status_code == 200 and len(listing.headers["X-Request-Id"]) == 32  # one made up
        bad_id = await client.get("/health", headers={"X-Request-Id": "x" * 500})
        assert bad_id.headers["X-Request-Id"] != "x" * 500  # too long to echo: replaced
    url = server.base_url.replace("http://", "ws://") + f"/api/v1/ws?view=hosts&token={token}"
    async with open_websocket_url(url) as ws:
        assert orjson.loads(await ws.get_message())["type"] == "topology_update"


async def test_one_line_per_request_with_the_route_template_and_no_secret():
    with ServerProcess(["--access-log", "true", "--protect-reads", "true"]) as server:
        token = server.user_token()
        await _requests(server, token)
        assert server.stop() == 0  # the WebSocket's line is written when it ends
        log = server.stderr()
    lines = _access_lines(log)
    assert any("GET /api/v1/users/me 200 " in line and "request_id=req-abc.123" in line
               and "client=127.0.0.1" in line for line in lines), lines
    assert any("GET /api/v1/query/topology 200 " in line for line in lines), lines
    assert any("GET /api/v1/ws (websocket) 101 " in line for line in lines), lines
    assert token not in log and QUERY_SECRET not in log and "token=" not in log


async def test_json_log_mode_has_one_object_per_request():
    with ServerProcess(["--access-log", "true", "--log-format", "json", "--protect-reads", "true"]) as server:
        token = server.user_token()
        await _requests(server, token)
        server.stop()
        log = server.stderr()
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [entry for entry in entries if entry["logger"] == "trioscope.access"]
    me = next(entry for entry in access if entry["route"] == "/api/v1/users/me")
    assert me["method"] == "GET" and me["status"] == 200 and me["request_id"] == "req-abc.123"
    assert me["client"] == "127.0.0.1" and me["bytes"] > 0 and me["duration_ms"] >= 0
    socket = next(entry for entry in access if entry["route"] == "/api/v1/ws")
    assert socket["websocket"] is True and socket["status"] == 101
    assert token not in log and QUERY_SECRET not in log


def test_off_by_default_but_request_ids_are_always_answered():
    with ServerProcess() as server:
        response = httpx.get(f"{server.base_url}/health", headers={"X-Request-Id": "r-1"})
        assert response.headers["X-Request-Id"] == "r-1"
        server.stop()
        assert _access_lines(server.stderr()) == []


def _refusals(server: ServerProcess, forwarded_for: str, count: int) -> list[int]:
    with httpx.Client(base_url=server.base_url, headers={"X-Forwarded-For": forwarded_for}) as client:
        return [client.get("/api/v1/audit").status_code for _ in range(count)]


def test_behind_a_trusted_proxy_rate_limits_audit_and_access_log_see_the_real_client():
    # 10 a minute: a burst of 10, then one every 6 s.
    with ServerProcess(["--trusted-proxies", "127.0.0.0/8", "--rate-per-address", "10", "--access-log", "true"]) as server:
        assert _refusals(server, "198.51.100.1", 11)[-2:] == [401, 429]
        assert _refusals(server, "1.2.3.4, 198.51.100.2", 1) == [401]  # another client, its own budget
        server.stop()
        audit = run_cli(["audit", "--unattributed", "--json", "--data-dir", server.data_dir])
        log = server.stderr()
    addresses = {json.loads(line)["address"] for line in audit.stdout.splitlines()}
    assert addresses == {"198.51.100.1", "198.51.100.2"}
    assert any("429" in line and "client=198.51.100.1" in line for line in _access_lines(log))


def test_an_ipv6_client_rotating_addresses_in_its_slash_64_shares_one_budget():
    """Per-address limits count an IPv6 client by its /64 (it has 2^64 addresses
    to send from); the audit log still names each address."""
    with ServerProcess(["--trusted-proxies", "127.0.0.0/8", "--rate-per-address", "10"]) as server:
        rotated = [status for i in range(11) for status in _refusals(server, f"2001:db8:1:2::{i + 1:x}", 1)]
        assert rotated[-2:] == [401, 429]
        assert _refusals(server, "2001:db8:1:3::1", 1) == [401]  # the next /64: another client
        server.stop()
        audit = run_cli(["audit", "--unattributed", "--json", "--data-dir", server.data_dir])
    addresses = {json.loads(line)["address"] for line in audit.stdout.splitlines()}
    assert {"2001:db8:1:2::1", "2001:db8:1:2::a", "2001:db8:1:3::1"} <= addresses


def test_forwarded_headers_from_anyone_else_are_ignored():
    with ServerProcess(["--rate-per-address", "10"]) as server:
        assert _refusals(server, "198.51.100.1", 10) == [401] * 10
        assert _refusals(server, "198.51.100.2", 1) == [429]  # same peer, same budget, whatever it claims


def test_a_made_up_method_is_logged_as_other():
    """Any token is a method to HTTP: a client's 15,000-character one made an
    access-log line of 15 KB, and an answer as long."""
    with ServerProcess(["--access-log", "true"]) as server:
        made_up = "X" * 15_000
        refused = httpx.request(made_up, f"{server.base_url}/api/v1/ping")
        assert refused.status_code == 405
        assert refused.json()["error"]["message"] == "XXXXXXXXXXXXXXXX... is not allowed on /api/v1/ping"
        server.stop()
        lines = _access_lines(server.stderr())
    assert any(" other (unmatched) 405 " in line for line in lines), lines
    assert all(made_up not in line and len(line) < 1_000 for line in lines), [len(line) for line in lines]


def _dual_stack() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _dual_stack(), reason="this machine has no IPv6 to listen on '::'")
def test_on_a_dual_stack_listener_an_ipv4_proxy_is_trusted_and_ipv4_clients_are_logged_as_ipv4():
    """``--host ::`` saw IPv4 peers as ``::ffff:127.0.0.1``, in no IPv4
    network: the proxy listed in ``--trusted-proxies`` was never trusted (its
    clients one for the limits and the logs)."""
    with ServerProcess(["--host", "::", "--trusted-proxies", "127.0.0.1/32", "--access-log", "true",
                        "--allowed-hosts", "monitor.example"]) as server:
        port = server.base_url.rpartition(":")[2]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            behind = client.get("/health", headers={"X-Forwarded-For": "198.51.100.7", "Host": "monitor.example"})
            assert behind.status_code == 200, behind.text
        server.stop()
        log = server.stderr()
    lines = _access_lines(log)
    assert any("GET /health 200 " in line and "client=198.51.100.7" in line for line in lines), lines
    assert "::ffff:" not in log
