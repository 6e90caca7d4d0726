"""Live views at scale, against a real server with a generated 1,000-host
topology: hundreds of clients connecting at once all get their first view and
the next diff, ``/health`` answers meanwhile, a client that does not read is
closed (1008) without holding the others up, and clients waiting for their
first view are counted (503 beyond ``--ws-max-waiting-clients``). Memory per
client and its release are measured in bench/live_scale.py, not here."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from tests.server_process import ServerProcess
from tests.synthetic import host_report

HOSTS = 1000
CLIENTS = 300


def ws_url(server: ServerProcess, query: str = "?view=hosts") -> str:
    return server.base_url.replace("http://", "ws://") + "/api/v1/ws" + query


async def load(server: ServerProcess, hosts: int) -> None:
    """``hosts`` small hosts (2 containers, 5 processes each), 16 at a time."""
    limiter = trio.CapacityLimiter(16)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:

        async def post(index: int) -> None:
            async with limiter:
                report = host_report(index, timestamp=time.time(), containers=2, processes=5, connections=0)
                response = await http.post("/api/v1/reports", json=report)
                assert response.status_code == 202, response.text

        async with trio.open_nursery() as nursery:
            for index in range(1, hosts + 1):
                nursery.start_soon(post, index)


def retry_after(refused: ConnectionRejected) -> float | None:
    """When to try again after a 503 "unavailable" (the server, on a loaded
    machine, too busy to start the client's actor in time), as a browser's
    client would; None for any other refusal."""
    if refused.status_code != 503 or not refused.body:
        return None
    if orjson.loads(refused.body)["error"]["code"] != "unavailable":
        return None
    return float(dict(refused.headers or [])[b"retry-after"])


async def topology_update(ws: Any, timeout: float = 60) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            message = orjson.loads(await ws.get_message())
            if message["type"] == "topology_update":
                return message["payload"]


async def health_status(http: httpx.AsyncClient) -> int:
    """``GET /health``'s status, sent once more on a connection closed before
    any answer, as browsers do for an idempotent request: this process's loop,
    busy with 300 first views on a loaded machine, can leave its keep-alive
    connection idle past the server's ``keep_alive_timeout``, and the server's
    close can cross the next request (a fresh connection answers it)."""
    try:
        return (await http.get("/health")).status_code
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return (await http.get("/health")).status_code


@pytest.fixture(scope="module")
def server():
    with ServerProcess(["--ws-ping-interval", "60s", "--ws-max-clients-per-address", "2000", "--max-connections-per-address", "2000",
                        "--ws-max-waiting-clients-per-address", "2000",
                        "--ws-buffer-size", "4", "--ws-slow-client-timeout", "2s"]) as process:
        trio.run(load, process, HOSTS)
        yield process


async def test_hundreds_of_clients_at_once_get_the_view_and_the_next_diff_while_health_answers(server):
    firsts: list[dict[str, Any]] = []
    diffs: list[dict[str, Any]] = []
    health: list[int] = []
    connected = trio.Event()
    go_on = trio.Event()

    async def client() -> None:
        for attempt in range(5):
            try:
                async with open_websocket_url(ws_url(server), connect_timeout=60, message_queue_size=4) as ws:
                    await follow(ws)
                    return
            except ConnectionRejected as refused:
                wait = retry_after(refused)
                if wait is None or attempt == 4:
                    raise
                await trio.sleep(wait)

    async def follow(ws: Any) -> None:
        first = await topology_update(ws)
        firsts.append(first)
        if len(firsts) == CLIENTS:
            connected.set()
        await go_on.wait()
        diff = await topology_update(ws)
        while diff["version"] <= first["version"]:  # diffs a client may have been sent before the report
            first = diff
            diff = await topology_update(ws)
        assert diff.get("reset") or diff["previous_version"] == first["version"]
        diffs.append(diff)

    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        async with trio.open_nursery() as nursery:
            for _ in range(CLIENTS):
                nursery.start_soon(client)
            # The server keeps answering others while the burst is served.
            while not connected.is_set():
                health.append(await health_status(http))
            response = await http.post("/api/v1/reports", json=host_report(
                1, timestamp=time.time(), containers=2, processes=5, connections=0, cpu=99.0))
            assert response.status_code == 202
            go_on.set()
    assert len(firsts) == CLIENTS
    assert all(first.get("reset") and len(first["nodes"]) == HOSTS for first in firsts)
    assert len(diffs) == CLIENTS
    assert all(d.get("reset") or d["update"]["nodes"].get("host:host-1") for d in diffs)
    assert health and set(health) == {200}


async def slow_client_closes(http: httpx.AsyncClient) -> float:
    """``app_websocket_slow_client_closes_total`` now (the server is the module's: other tests' closes count)."""
    for family in text_string_to_metric_families((await http.get("/metrics")).text):
        if family.name == "app_websocket_slow_client_closes":
            return sum(sample.value for sample in family.samples if sample.name.endswith("_total"))
    return 0.0


async def test_a_client_that_does_not_read_is_closed_and_the_others_go_on(server):
    # Its library stops reading once one message waits: the whole topology (a
    # few MB) fills the socket's buffers at once, then its queue fills with diffs.
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        before = await slow_client_closes(http)
        async with open_websocket_url(ws_url(server, ""), message_queue_size=0, max_message_size=1 << 26) as slow:
            async with open_websocket_url(ws_url(server), message_queue_size=4) as fast:
                version = (await topology_update(fast))["version"]
                with trio.fail_after(60):
                    for round_ in range(10_000):
                        for host in range(1, 4):
                            response = await http.post("/api/v1/reports", json=host_report(
                                host, timestamp=time.time(), containers=2, processes=5, connections=0,
                                cpu=float(round_ % 90 + 1)))
                            assert response.status_code == 202
                        payload = await topology_update(fast)
                        assert payload.get("reset") or payload["previous_version"] == version
                        version = payload["version"]
                        if await slow_client_closes(http) > before:
                            break
                    else:
                        pytest.fail("the client that does not read was never closed")
            # What it had been sent, read now, ends in the server's close.
            with trio.fail_after(60):
                with pytest.raises(ConnectionClosed):
                    while True:
                        await slow.get_message()
            assert slow.closed is not None and slow.closed.code == 1008, slow.closed


async def test_clients_waiting_for_their_first_view_are_counted_and_refused_beyond_the_limit():
    with ServerProcess(["--ws-max-waiting-clients", "3", "--ws-first-views-per-second", "1",
                        "--ws-ping-interval", "60s"]) as server:
        await load(server, 5)
        async with trio.open_nursery() as nursery:
            # One view now, the next ones a second apart: clients connecting
            # faster than that wait, connected, until three are waiting.
            opened: list[Any] = []
            with pytest.raises(ConnectionRejected) as refused:
                while len(opened) < 20:
                    opened.append(await nursery.start(hold, ws_url(server)))
            assert 3 <= len(opened) < 20
            assert refused.value.status_code == 503
            assert orjson.loads(refused.value.body)["error"]["code"] == "too_many_waiting_clients"
            # Once they have their views, others may come.
            for ws in opened:
                await topology_update(ws, timeout=30)
            with trio.fail_after(30):
                while True:
                    try:
                        async with open_websocket_url(ws_url(server)) as ws:
                            assert (await topology_update(ws))["reset"]
                            break
                    except ConnectionRejected:
                        await trio.sleep(0.2)  # the last of the three is still being written
            nursery.cancel_scope.cancel()


async def test_one_address_may_hold_its_share_of_the_waiting_room_not_all_of_it():
    """Clients that never get (or never read) their first view hold a place
    each; one address holds at most ``--ws-max-waiting-clients-per-address`` of them (20)."""
    waiting_per_address = 20  # the setting's default

    with ServerProcess(["--ws-first-views-per-second", "1", "--ws-ping-interval", "60s",
                        "--ws-address-wait", "0s"]) as server:
        await load(server, 5)
        async with trio.open_nursery() as nursery:
            opened: list[Any] = []
            with pytest.raises(ConnectionRejected) as refused:
                while len(opened) < 3 * waiting_per_address:
                    opened.append(await nursery.start(hold, ws_url(server)))
            assert waiting_per_address <= len(opened) < 3 * waiting_per_address
            error = orjson.loads(refused.value.body)["error"]
            assert refused.value.status_code == 503 and error["code"] == "too_many_waiting_clients"
            assert error["message"].startswith(f"{waiting_per_address} WebSocket clients from your address")
            nursery.cancel_scope.cancel()


async def test_clients_of_one_address_beyond_its_share_wait_for_a_place_rather_than_being_refused():
    """100 live views of one address connecting at once had 80 refused at once
    (503), though each first view took a fraction of a second: those beyond
    its share now wait for the views before them to be written."""
    with ServerProcess(["--ws-max-waiting-clients-per-address", "2", "--ws-ping-interval", "60s"]) as server:
        await load(server, 5)
        resets: list[bool] = []

        async def one() -> None:
            async with open_websocket_url(ws_url(server)) as ws:
                resets.append((await topology_update(ws, timeout=30))["reset"])

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(12):
                    nursery.start_soon(one)
        assert resets == [True] * 12


async def hold(url: str, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
    async with open_websocket_url(url) as ws:
        task_status.started(ws)
        await trio.sleep_forever()
