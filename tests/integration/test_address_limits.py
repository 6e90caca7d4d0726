"""One address, or one kind of client, cannot take the server from the others,
against a real server: per-address budgets for reports, registrations and
WebSocket upgrades (before any decoding), a per-address cap on open sockets,
and ``--max-agents`` that never locks enrolled probes out."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected, WebSocketConnection, wrap_client_stream

from tests.integration.test_commands import Operator, enroll, fresh
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually


def _report(probe: str) -> dict[str, object]:
    return host_report(0, timestamp=time.time(), containers=1, processes=1, connections=0, agent_prefix=probe)


def _refused(metrics: str, reason: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(f'app_requests_refused_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


@asynccontextmanager
async def _socket(server: ServerProcess, path: str, source: str = "127.0.0.1") -> AsyncIterator[WebSocketConnection]:
    """A WebSocket to ``path`` from the client address ``source`` (any 127.x.y.z)."""
    url = urlsplit(server.base_url)
    assert url.hostname is not None and url.port is not None
    try:
        async with trio.open_nursery() as nursery:
            stream = await trio.open_tcp_stream(url.hostname, url.port, local_address=source)
            ws = await wrap_client_stream(nursery, stream, url.hostname, path)
            try:
                yield ws
            finally:
                await ws.aclose()
    except* ConnectionRejected as group:
        raise group.exceptions[0] from None


async def test_reports_and_registrations_have_budgets_per_address_checked_before_decoding() -> None:
    with ServerProcess(["--reports-per-address", "20", "--registrations-per-address", "10"]) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            statuses = [(await client.post("/api/v1/reports", content=b"not json",
                                           headers={"Content-Type": "application/json"})).status_code
                        for _ in range(30)]
            assert 400 in statuses and statuses[-1] == 429  # the budget is spent before the body is read
            limited = await client.post("/api/v1/reports", json=_report(fresh("p")))
            assert limited.status_code == 429 and limited.json()["error"]["details"]["scope"] == "address_reports"
            assert int(limited.headers["Retry-After"]) >= 1
            registrations = [(await client.post("/api/v1/agents/register", json={"agent_id": fresh("r")})).status_code
                             for _ in range(15)]
            assert registrations.count(201) >= 5 and registrations[-1] == 429
            # Other requests from the same address have their own budget.
            assert (await client.get("/api/v1/query/topology")).status_code == 200
            metrics = (await client.get("/metrics")).text
            assert _refused(metrics, "rate_address_reports") >= 1
            assert _refused(metrics, "rate_address_registrations") >= 1


async def test_websocket_upgrades_count_against_the_address_budget() -> None:
    with ServerProcess(["--rate-per-address", "15"]) as server:
        rejected = 0
        for _ in range(30):
            try:
                async with _socket(server, "/api/v1/ws?view=hosts"):
                    pass
            except ConnectionRejected as exc:
                assert exc.status_code == 429
                rejected += 1
        assert rejected > 0
        async with _socket(server, "/api/v1/ws?view=hosts", source="127.0.0.2") as ws:  # another address
            with trio.fail_after(10):
                assert json.loads(await ws.get_message())["type"] == "topology_update"


async def test_one_address_cannot_take_every_websocket() -> None:
    with ServerProcess(["--ws-max-clients-per-address", "3", "--ws-max-clients", "10"]) as server:
        async with _socket(server, "/api/v1/ws"), _socket(server, "/api/v1/ws"), _socket(server, "/api/v1/ws"):
            try:
                async with _socket(server, "/api/v1/ws"):
                    raise AssertionError("a fourth socket from one address was accepted")
            except ConnectionRejected as exc:
                assert exc.status_code == 503
                assert json.loads(exc.body)["error"]["code"] == "too_many_clients_from_address"
            async with _socket(server, "/api/v1/ws?view=hosts", source="127.0.0.3") as other:
                with trio.fail_after(10):
                    assert json.loads(await other.get_message())["type"] == "topology_update"
        # Closed sockets give their places back.
        async with _socket(server, "/api/v1/ws"), _socket(server, "/api/v1/ws"), _socket(server, "/api/v1/ws"):
            pass


async def test_one_users_token_cannot_take_every_websocket_from_many_addresses() -> None:
    with ServerProcess(["--ws-max-clients-per-user", "2", "--ws-max-clients", "10"]) as server:
        alice, bob = server.user_token("alice", role="VIEWER"), server.user_token("bob", role="VIEWER")
        async with _socket(server, f"/ws/user/alice?token={alice}", source="127.0.0.2"), \
                _socket(server, f"/ws/user/alice?token={alice}", source="127.0.0.3"):
            try:
                async with _socket(server, f"/ws/user/alice?token={alice}", source="127.0.0.4"):
                    raise AssertionError("a third socket of one user was accepted")
            except ConnectionRejected as exc:
                assert exc.status_code == 503
                assert json.loads(exc.body)["error"]["code"] == "too_many_clients_of_user"
            async with _socket(server, f"/ws/user/bob?token={bob}", source="127.0.0.4") as other:
                with trio.fail_after(10):
                    assert json.loads(await other.get_message())["type"] == "initial_state"
        async with _socket(server, f"/ws/user/alice?token={alice}", source="127.0.0.4") as again:  # places given back
            with trio.fail_after(10):
                assert json.loads(await again.get_message())["type"] == "initial_state"


async def test_enrolled_probes_always_have_room_and_stale_unenrolled_ones_make_room() -> None:
    with ServerProcess(["--max-agents", "3", "--stale-node-threshold", "2s"]) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            loose = [fresh("loose") for _ in range(3)]
            for probe in loose:
                assert (await client.post("/api/v1/reports", json=_report(probe))).status_code == 202
            full = await client.post("/api/v1/reports", json=_report(fresh("late")))
            assert (full.status_code, full.json()["error"]["code"]) == (503, "too_many_agents")

            agent = await enroll(client, server, Operator(server, fresh("user"), fresh("tenant")))
            enrolled = fresh("enrolled")
            assert (await agent.signed_post(client, "/api/v1/reports", _report(enrolled))).status_code == 202
            listed = {row["agent_id"] for row in (await client.get("/api/v1/agents/list")).json()["agents"]}
            assert f"{enrolled}-0" in listed and f"{loose[0]}-0" not in listed  # the oldest unenrolled one went

            async def admitted() -> bool:  # once the others are stale, a newcomer takes a place
                return (await client.post("/api/v1/reports", json=_report(fresh("newcomer")))).status_code == 202

            await eventually(admitted)
            listed = {row["agent_id"] for row in (await client.get("/api/v1/agents/list")).json()["agents"]}
            assert f"{enrolled}-0" in listed and len(listed) == 3
            assert _refused((await client.get("/metrics")).text, "agents_full") >= 1


async def test_one_address_making_up_agent_ids_keeps_only_its_share_of_max_agents() -> None:
    """Unsigned probes are accepted, so one client can make up agent ids: it
    used to keep every place (each fresh), locking every other address's new
    probes out. At the limit, a new probe from an address holding fewer takes
    the place of the least recently heard probe of the address holding most."""
    with ServerProcess(["--max-agents", "4"]) as server:
        async with httpx.AsyncClient(base_url=server.base_url,
                                     transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")) as abuser, \
                httpx.AsyncClient(base_url=server.base_url,
                                  transport=httpx.AsyncHTTPTransport(local_address="127.0.0.3")) as office:
            async def post(client: httpx.AsyncClient, probe: str) -> int:
                return (await client.post("/api/v1/reports", json=_report(probe))).status_code

            made_up = [fresh("made-up") for _ in range(5)]
            assert [await post(abuser, probe) for probe in made_up] == [202, 202, 202, 202, 503]
            own = [fresh("office") for _ in range(3)]
            assert await post(office, own[0]) == 202  # the abuser's oldest went
            assert await post(abuser, fresh("made-up")) == 503  # it holds the most already
            assert await post(office, own[1]) == 202  # two each now
            assert await post(office, own[2]) == 503  # no address takes another's fair share
            listed = {row["agent_id"] for row in (await abuser.get("/api/v1/agents/list")).json()["agents"]}
            assert listed == {f"{p}-0" for p in (*made_up[2:4], *own[:2])}
            assert await post(abuser, made_up[3]) == 202  # probes it still has go on


async def test_open_reads_are_charged_to_the_address_and_health_checks_are_not() -> None:
    """With reads open (the default) the query API, /metrics and /api/v1/ping
    answered any number of requests from one address; orchestrators' health
    checks stay unlimited (a 429 to one would restart a server that is fine)."""
    with ServerProcess(["--rate-per-address", "60"]) as server:  # a burst of 10, then one a second
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            statuses = [(await client.get("/metrics")).status_code for _ in range(11)]
            assert statuses == [200] * 10 + [429], statuses
            for path in ("/api/v1/query/topology", "/api/v1/query/stats", "/api/v1/ping"):  # the same budget
                limited = await client.get(path)
                assert limited.status_code == 429, path
                assert limited.json()["error"]["details"]["scope"] == "address"
            for path in ("/health", "/health/ready"):
                assert {(await client.get(path)).status_code for _ in range(30)} == {200}, path
        async with httpx.AsyncClient(base_url=server.base_url,
                                     transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")) as other:
            assert (await other.get("/metrics")).status_code == 200  # another address, its own budget
            assert _refused((await other.get("/metrics")).text, "rate_address") >= 4


async def test_a_protected_live_stream_upgrade_is_charged_once() -> None:
    """With --protect-reads the handshake charged the address, then the token
    check charged it again: half the documented budget."""
    with ServerProcess(["--protect-reads", "true", "--rate-per-address", "60"]) as server:
        statuses = []
        for _ in range(11):
            try:
                async with _socket(server, "/api/v1/ws?view=hosts"):
                    raise AssertionError("a handshake without a token was accepted")
            except ConnectionRejected as exc:
                statuses.append(exc.status_code)
        assert statuses == [401] * 10 + [429], statuses


async def test_messages_on_a_live_view_count_against_the_address_budget() -> None:
    """Counted by nothing, four sockets without a token sending 64 KiB messages
    as fast as they could raised every other client's latency 4x. A message
    beyond the budget is dropped and answered ``rate_limited``; the socket is
    read again after a pause, and another address has its own budget."""
    with ServerProcess(["--rate-per-address", "60"]) as server:  # a burst of 10 (the upgrade one), then one a second
        async with _socket(server, "/api/v1/ws?view=hosts") as ws:
            for _ in range(12):
                await ws.send_message(json.dumps({"type": "ping"}))
            answers: list[str] = []
            with trio.fail_after(20):
                while "rate_limited" not in answers or answers[-1] != "pong":  # refused, then read again
                    frame = json.loads(await ws.get_message())
                    answers.append(frame["payload"]["code"] if frame["type"] == "error" else frame["type"])
                    if answers[-1] == "rate_limited":
                        await ws.send_message(json.dumps({"type": "ping"}))
            assert answers.index("rate_limited") >= 1 + 9, answers  # the first view, then the burst's 9 pongs
        async with httpx.AsyncClient(base_url=server.base_url,
                                     transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")) as other:
            assert _refused((await other.get("/metrics")).text, "rate_address") >= 1


TCP_REPAIR = 19
"""Linux: a socket closed in repair mode sends nothing (no FIN, no RST): a client gone without a word."""


def _vanishing_user_socket(server: ServerProcess, path: str) -> socket.socket:
    """A ``/ws/user`` socket that has read its ``initial_state``, ready to vanish (``TCP_REPAIR``)."""
    url = urlsplit(server.base_url)
    assert url.hostname is not None and url.port is not None
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {url.hostname}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode())
    answer = b""
    while b"initial_state" not in answer:
        answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 101"), answer[:200]
    return sock


async def test_a_user_socket_gone_without_a_word_gives_its_places_back() -> None:
    """Pinged as the live views are, its pings unacknowledged for --write-timeout:
    it held its user's places until its token expired (a quiet tenant's sockets
    are sent nothing), and the user's next socket got 503 too_many_clients_of_user."""
    with ServerProcess(["--ws-max-clients-per-user", "2", "--ws-ping-interval", "1s",
                        "--write-timeout", "2s"]) as server:
        alice = server.user_token("alice", role="VIEWER")
        gone = [_vanishing_user_socket(server, f"/ws/user/alice?token={alice}") for _ in range(2)]
        for sock in gone:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
            except PermissionError:
                pytest.skip("TCP_REPAIR needs CAP_NET_ADMIN: a client cannot be made to vanish here")
            sock.close()

        async def a_new_socket_is_taken() -> bool:
            try:
                async with _socket(server, f"/ws/user/alice?token={alice}") as again:
                    return json.loads(await again.get_message())["type"] == "initial_state"
            except ConnectionRejected as exc:
                assert json.loads(exc.body)["error"]["code"] == "too_many_clients_of_user"
                return False

        await eventually(a_new_socket_is_taken, deadline=60)


async def test_a_pong_to_the_servers_ping_is_taken_from_a_client_over_its_budget() -> None:
    """The server asks for it: dropped for the address's budget, a client that
    answers pings would be closed for not answering them (two in a row)."""
    def kind(frame: str) -> str:
        message = json.loads(frame)
        return str(message["payload"]["code"] if message["type"] == "error" else message["type"])

    with ServerProcess(["--rate-per-address", "10", "--ws-ping-interval", "1s"]) as server:  # 10 at once, then 1/6 s
        token = server.user_token("alice", role="VIEWER")
        async with _socket(server, f"/ws/user/alice?token={token}") as ws:
            for _ in range(10):  # the budget spent (the upgrade took one), and the tenth ping refused
                await ws.send_message(json.dumps({"type": "ping"}))
            with trio.fail_after(20):
                while kind(await ws.get_message()) != "rate_limited":
                    pass
            after: list[str] = []
            with trio.fail_after(20):
                while after.count("ping") < 4:  # three pings answered, and the next one: any refusal is before it
                    after.append(kind(await ws.get_message()))
                    if after[-1] == "ping" and after.count("ping") < 4:
                        await ws.send_message(json.dumps({"type": "pong"}))
            assert "rate_limited" not in after, after
