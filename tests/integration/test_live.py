"""``/api/v1/ws`` with a real server and a real WebSocket client (trio-websocket)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.bus_server import report_path
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually

T0 = time.time()


def ws_url(server: ServerProcess, query: str = "") -> str:
    return server.base_url.replace("http://", "ws://") + "/api/v1/ws" + query


async def next_message(ws: Any, kind: str | None = None, timeout: float = 10) -> dict[str, Any]:
    """The next message (of ``kind``, skipping server pings)."""
    with trio.fail_after(timeout):
        while True:
            message = orjson.loads(await ws.get_message())
            if message["type"] == "ping" and kind != "ping":
                continue
            if kind is None or message["type"] == kind:
                return message


async def post(server: ServerProcess, index: int, t: float, **kwargs: Any) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.post("/api/v1/reports", json=host_report(index, timestamp=t, **kwargs))
        assert response.status_code == 202, response.text


async def topology(server: ServerProcess, view: str | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        params = {"view": view} if view else {}
        return (await client.get("/api/v1/query/topology", params=params)).json()["topology"]


def apply(state: dict[str, Any], diff: dict[str, Any]) -> None:
    for kind in ("nodes", "edges"):
        for key in diff["remove"][kind]:
            state[kind].pop(key, None)
        state[kind].update(diff["add"][kind])
        state[kind].update(diff["update"][kind])


@pytest.fixture(params=["in-process", "bus"])
def server(request):
    """Both report paths: merged where posted, and through the report bus."""
    with report_path(request.param) as flags, ServerProcess(["--ws-ping-interval", "60s", *flags]) as process:
        process.wait_ready()
        yield process


async def test_connect_gets_the_view_then_diffs_with_consecutive_versions(server):
    async with open_websocket_url(ws_url(server, "?view=hosts")) as ws:
        reset = (await next_message(ws, "topology_update"))["payload"]
        assert reset["reset"] is True and reset["view"] == "hosts" and reset["nodes"] == {}
        await post(server, 1, T0, containers=1, processes=2, connections=0)
        diff = (await next_message(ws, "topology_update"))["payload"]
        assert diff["previous_version"] == reset["version"]
        assert list(diff["add"]["nodes"]) == ["host:host-1"]
        await post(server, 2, T0, containers=1, processes=2, connections=0)
        second = (await next_message(ws, "topology_update"))["payload"]
        assert second["previous_version"] == diff["version"]


@pytest.mark.parametrize("view", [None, "hosts", "processes"])
async def test_applying_the_diffs_reproduces_the_topology_endpoint(server, view):
    query = f"?view={view}" if view else ""
    async with open_websocket_url(ws_url(server, query)) as ws:
        state = (await next_message(ws, "topology_update"))["payload"]
        version = state["version"]
        for round_ in range(4):
            for host in (1, 2, 3):
                await post(server, host, T0 + round_, peers=[h for h in (1, 2, 3) if h != host],
                           containers=2, processes=4 - round_, connections=6)
        expected = await topology(server, view)
        while version < expected["version"]:
            payload = (await next_message(ws, "topology_update"))["payload"]
            if payload.get("reset"):
                state, version = payload, payload["version"]
                continue
            assert payload["previous_version"] == version
            apply(state, payload)
            version = payload["version"]
        assert version == expected["version"]
        assert state["nodes"] == expected["nodes"]
        assert state["edges"] == expected["edges"]


async def test_subscriptions_topics_and_filters(server):
    await post(server, 1, T0, containers=2, processes=3, connections=0)
    await post(server, 2, T0, containers=2, processes=3, connections=0)
    async with open_websocket_url(ws_url(server)) as ws:
        await next_message(ws, "topology_update")
        await ws.send_message(orjson.dumps({"type": "subscribe", "view": "hosts", "filter": {"search": "host-2"},
                                            "topics": ["agent:agent-2"]}).decode())
        reset = (await next_message(ws, "topology_update"))["payload"]
        assert reset["reset"] and list(reset["nodes"]) == ["host:host-2"]
        await post(server, 1, T0 + 1, containers=2, processes=3, connections=0)
        await post(server, 2, T0 + 1, containers=2, processes=3, connections=0)
        # The report's update and the topology's diff come in either order.
        seen: dict[str, dict[str, Any]] = {}
        while len(seen) < 2:
            message = await next_message(ws)
            assert message["type"] in ("report_update", "topology_update"), message
            seen.setdefault(message["type"], message["payload"])
        report, diff = seen["report_update"], seen["topology_update"]
        assert report["agent_id"] == "agent-2" and report["summary"]["processes"] == 3
        assert set(diff["update"]["nodes"]) <= {"host:host-2"}
        await ws.send_message('{"type":"unsubscribe","topics":["topology","agent:agent-2"]}')
        await ws.send_message('{"type":"ping"}')
        await next_message(ws, "pong")
        await post(server, 2, T0 + 2, containers=2, processes=3, connections=0)
        await ws.send_message('{"type":"ping"}')
        # Nothing but the pong: no topology or report after unsubscribing.
        assert (await next_message(ws))["type"] == "pong"


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "subscribe", "view": "planets"}', "invalid_view"),
        ('{"type": "subscribe", "topics": "topology"}', "invalid_topics"),
        ('{"type": "subscribe", "topics": ["weather"]}', "invalid_topics"),
        ('{"type": "subscribe", "filter": {"search": 5}}', "invalid_filter"),
        ('{"type": "subscribe", "filter": {"colour": "red"}}', "invalid_filter"),
    ],
)
async def test_bad_messages_get_an_error_and_the_connection_stays(server, sent, code):
    async with open_websocket_url(ws_url(server)) as ws:
        await next_message(ws, "topology_update")
        await ws.send_message(sent)
        error = (await next_message(ws, "error"))["payload"]
        assert error["code"] == code and error["message"]
        await ws.send_message('{"type": "ping"}')
        await next_message(ws, "pong")


async def test_a_frame_over_64_kib_closes_with_1009(server):
    async with open_websocket_url(ws_url(server)) as ws:
        await next_message(ws, "topology_update")
        await ws.send_message("x" * (64 * 1024 + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await next_message(ws)
        assert closed.value.reason.code == 1009


async def test_an_unknown_view_is_refused_before_the_handshake(server):
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.get("/api/v1/ws", params={"view": "planets"},
                                    headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                             "Sec-WebSocket-Version": "13",
                                             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert response.status_code == 400 and response.json()["error"]["details"]["parameter"] == "view"


async def test_clients_are_counted_in_stats_and_metrics(server):
    async with open_websocket_url(ws_url(server)) as one, open_websocket_url(ws_url(server)) as two:
        await next_message(one, "topology_update")
        await next_message(two, "topology_update")
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            assert (await client.get("/api/v1/query/stats")).json()["websocket_clients"] == 2
            metrics = (await client.get("/metrics")).text
        assert "app_websocket_clients 2.0" in metrics
        assert "app_websocket_resets_total" in metrics and "app_websocket_messages_sent_total" in metrics


async def test_a_client_that_never_reads_does_not_delay_the_others():
    with ServerProcess(["--ws-buffer-size", "2", "--ws-slow-client-timeout", "2s",
                        "--ws-ping-interval", "60s"]) as server:
        # The slow client's library stops reading from the socket once one
        # message is waiting; the server's send then blocks and its queue fills.
        async with open_websocket_url(ws_url(server), message_queue_size=0) as slow:
            async with open_websocket_url(ws_url(server, "?view=hosts")) as fast:
                version = (await next_message(fast, "topology_update"))["payload"]["version"]
                async with httpx.AsyncClient(base_url=server.base_url) as client:
                    deadline = trio.current_time() + 60
                    while trio.current_time() < deadline:
                        for host in range(1, 6):  # large diffs: hundreds of changed processes
                            await post(server, host, time.time(), processes=150, connections=0)
                        latest = (await client.get("/api/v1/query/topology", params={"view": "hosts"})).json()
                        while version < latest["topology"]["version"]:
                            payload = (await next_message(fast, "topology_update"))["payload"]
                            assert payload.get("reset") or payload["previous_version"] == version
                            version = payload["version"]
                        metrics = (await client.get("/metrics")).text
                        if "app_websocket_slow_client_closes_total 1.0" in metrics:
                            break
                    else:
                        pytest.fail("the slow client was never closed")
                    assert "app_websocket_messages_dropped_total 0.0" not in metrics
            del slow


async def test_shutdown_closes_every_socket_with_1001():
    server = ServerProcess()
    with server:
        async with open_websocket_url(ws_url(server)) as ws:
            await next_message(ws, "topology_update")
            server.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                await next_message(ws, timeout=10)
            assert closed.value.reason.code == 1001
        assert server.wait(timeout=30) == 0


async def test_a_client_flooding_resyncs_gets_one_reset_per_interval_and_health_keeps_answering():
    with ServerProcess(["--ws-ping-interval", "60s", "--ws-resync-interval", "1s"]) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            for host in range(1, 31):  # ~3,500 nodes: each filtered reset looks at all of them
                response = await http.post("/api/v1/reports", json=host_report(host, timestamp=T0, connections=0))
                assert response.status_code == 202, response.text

            async def loaded() -> bool:
                stats = (await http.get("/api/v1/query/stats")).json()["topology"]
                return stats["nodes_by_type"]["host"] == 30

            await eventually(loaded)
            async with open_websocket_url(ws_url(server), max_message_size=2**26) as ws:
                await next_message(ws, "topology_update")
                await ws.send_message('{"type":"subscribe","filter":{"search":"svc-3-"}}')
                assert (await next_message(ws, "topology_update"))["payload"]["reset"]
                resets: list[float] = []
                flooded = trio.Event()

                async def read() -> None:
                    while True:
                        message = orjson.loads(await ws.get_message())
                        if message["type"] == "topology_update" and message["payload"].get("reset"):
                            assert "host:host-1" not in message["payload"]["nodes"]  # filtered
                            resets.append(trio.current_time())

                async def flood() -> None:
                    for index in range(3000):
                        await ws.send_message('{"type":"resync"}')
                        if index % 100 == 0:
                            await trio.sleep(0.05)
                    flooded.set()

                async with trio.open_nursery() as nursery:
                    started = trio.current_time()
                    nursery.start_soon(read)
                    nursery.start_soon(flood)
                    answered = 0
                    while not flooded.is_set():  # the rest of the server answers meanwhile
                        assert (await http.get("/health")).status_code == 200
                        answered += 1
                    last_asked = trio.current_time()

                    async def answered_after_the_flood() -> bool:
                        return any(t > last_asked for t in resets)

                    # The last resyncs are not dropped: a reset answers them.
                    await eventually(answered_after_the_flood, deadline=15)
                    nursery.cancel_scope.cancel()
                assert answered >= 1
                # At most one reset per second of flood (plus one in flight at each end).
                assert len(resets) <= (resets[-1] - started) / 1.0 + 2


async def test_a_filtered_client_holds_what_a_fresh_reset_with_its_filter_gives(server):
    """Hosts in a ring start and stop matching a CPU filter while the edges
    between them stay: the client is sent each host that starts matching as new,
    and holds only the edges between two matching hosts, as a client that
    connects afterwards with the same filter does."""
    subscribe = orjson.dumps({"type": "subscribe", "topics": ["topology"], "view": "hosts",
                              "filter": {"min_metrics": {"cpu_usage": 50}}}).decode()
    ring = {1: [2], 2: [3], 3: [1]}

    async def report(host: int, at: float, cpu: float) -> None:
        await post(server, host, at, peers=ring[host], cpu=cpu, containers=0, processes=3, connections=4)

    async def filtered_reset(ws: Any) -> dict[str, Any]:
        await next_message(ws, "topology_update")  # the view it connects with, unfiltered
        await ws.send_message(subscribe)
        while not (payload := (await next_message(ws, "topology_update"))["payload"]).get("reset"):
            pass  # a diff sent before the subscription changed
        return payload

    async def linked() -> bool:
        return len((await topology(server, "hosts"))["edges"]) == 3

    for host in ring:
        await report(host, T0, 90.0 if host == 1 else 10.0)
    await eventually(linked)
    async with open_websocket_url(ws_url(server, "?view=hosts")) as ws:
        state = await filtered_reset(ws)
        held = {"nodes": dict(state["nodes"]), "edges": dict(state["edges"])}
        version = state["version"]
        assert set(held["nodes"]) == {"host:host-1"} and held["edges"] == {}

        async def follow(until: Callable[[], bool]) -> None:
            nonlocal version
            while not until():
                diff = (await next_message(ws, "topology_update"))["payload"]
                assert not diff.get("reset") and diff["previous_version"] == version
                for kind, items in held.items():
                    assert not set(diff["add"][kind]) & set(items), diff  # new to the client
                    assert set(diff["update"][kind]) <= set(items), diff  # held by it
                    assert set(diff["remove"][kind]) <= set(items), diff
                    items.update(diff["add"][kind] | diff["update"][kind])
                    for key in diff["remove"][kind]:
                        del items[key]
                version = diff["version"]

        await report(2, T0 + 1, 90.0)  # 1 -> 2 is the client's now, 2 -> 3 is not
        await follow(lambda: "host:host-2" in held["nodes"])
        assert set(held["edges"]) == {"host:host-1->host:host-2"}
        await report(3, T0 + 2, 90.0)
        await report(1, T0 + 2, 10.0)  # with host 1 go its edges
        await follow(lambda: set(held["nodes"]) == {"host:host-2", "host:host-3"})
        async with open_websocket_url(ws_url(server, "?view=hosts")) as fresh_ws:
            fresh = await filtered_reset(fresh_ws)
        await follow(lambda: version >= fresh["version"])
        assert version == fresh["version"]
        assert held == {"nodes": fresh["nodes"], "edges": fresh["edges"]}
        assert set(held["edges"]) == {"host:host-2->host:host-3"}
