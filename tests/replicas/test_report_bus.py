"""Replicas sharing a report bus (``--bus``, NATS JetStream): a report posted
to one is merged by every one, live views follow on any replica, the bus going
away costs no acknowledged report, and a restarted replica rebuilds its
topology and history from the stream."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.bus_server import own_nats_server, stream_max_bytes
from tests.replicas.conftest import replica, two_replicas
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually

SMALL = {"containers": 1, "processes": 2, "connections": 0}
"""Hosts small enough that a test posts hundreds of their reports in seconds."""


def bus_args(url: str, stream: str) -> tuple[str, ...]:
    return ("--bus", url, "--bus-stream", stream)


async def get(client: httpx.AsyncClient, server: ServerProcess, path: str, **params: Any) -> Any:
    response = await client.get(f"{server.base_url}{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def ready(client: httpx.AsyncClient, server: ServerProcess) -> bool:
    return (await client.get(f"{server.base_url}/health/ready")).status_code == 200


async def host_nodes(client: httpx.AsyncClient, server: ServerProcess) -> set[str]:
    nodes = (await get(client, server, "/api/v1/query/topology", view="hosts"))["topology"]["nodes"]
    return set(nodes)


async def next_update(ws: Any, timeout: float = 20.0) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            message = orjson.loads(await ws.get_message())
            if message["type"] == "topology_update":
                payload: dict[str, Any] = message["payload"]
                return payload


async def test_a_report_posted_to_a_appears_in_b_topology_and_on_a_websocket_held_on_b(
        request: pytest.FixtureRequest, postgres_url: str, nats_url: str, stream: str) -> None:
    with two_replicas(request, postgres_url, *bus_args(nats_url, stream)) as (a, b):
        async with httpx.AsyncClient(timeout=30) as client:
            await eventually(lambda: ready(client, a))
            await eventually(lambda: ready(client, b))
            url = b.base_url.replace("http://", "ws://") + "/api/v1/ws?view=hosts"
            async with open_websocket_url(url) as ws:
                reset = await next_update(ws)
                assert reset["reset"] is True and reset["nodes"] == {}
                posted = await client.post(f"{a.base_url}/api/v1/reports", json=host_report(1, timestamp=time.time(),
                                                                                            **SMALL))
                assert posted.status_code == 202, posted.text
                diff = await next_update(ws)
                assert "host:host-1" in diff["add"]["nodes"]
                assert diff["previous_version"] == reset["version"]
            assert await host_nodes(client, b) == {"host:host-1"}
            # Versions are the stream's sequence: both replicas call this topology version 1.
            stats_a = await get(client, a, "/api/v1/query/stats")
            stats_b = await get(client, b, "/api/v1/query/stats")
            assert stats_a["topology"]["version"] == stats_b["topology"]["version"] == diff["version"] == 1
            assert stats_b["bus"]["lag"] == 0 and stats_b["bus"]["caught_up"] is True
            metrics = (await client.get(f"{b.base_url}/metrics")).text
            assert "app_bus_lag_reports 0.0" in metrics


async def test_a_large_report_posted_to_a_is_merged_by_b_which_reads_it_off_its_event_loop(
        request: pytest.FixtureRequest, postgres_url: str, nats_url: str, stream: str) -> None:
    """An envelope over ``OFF_LOOP_BYTES`` is read in a worker thread on the replica that did not receive it."""
    report = host_report(1, timestamp=time.time(), containers=20, processes=4000, connections=2000)  # ~95 KB packed
    with two_replicas(request, postgres_url, *bus_args(nats_url, stream), "--agent-memory-budget", "64MiB") as (a, b):
        async with httpx.AsyncClient(timeout=60) as client:
            await eventually(lambda: ready(client, a))
            await eventually(lambda: ready(client, b))
            posted = await client.post(f"{a.base_url}/api/v1/reports", json=report)
            assert posted.status_code == 202, posted.text
            await eventually(lambda: _merged(client, b, 1))
            counts = (await get(client, b, "/api/v1/query/stats"))["topology"]["nodes_by_type"]
            assert counts["process"] >= 4000 and counts["container"] == 20, counts


async def test_a_replica_that_starts_late_gets_the_same_versions_so_a_client_moving_to_it_resyncs(
        request: pytest.FixtureRequest, postgres_url: str, nats_url: str, stream: str) -> None:
    """A client that reconnects to another replica gets a reset whose version
    is that of the same reports (the stream sequence), never a diff against a
    version that replica numbered differently."""
    async with httpx.AsyncClient(timeout=30) as client:
        with replica(postgres_url, *bus_args(nats_url, stream)) as a:
            await eventually(lambda: ready(client, a))
            for index in range(1, 6):
                posted = await client.post(f"{a.base_url}/api/v1/reports",
                                           json=host_report(index, timestamp=time.time(), **SMALL))
                assert posted.status_code == 202, posted.text
            await eventually(lambda: _version_is(client, a, 5))
            with replica(postgres_url, *bus_args(nats_url, stream)) as b:
                await eventually(lambda: ready(client, b))
                await eventually(lambda: _version_is(client, b, 5))
                url = b.base_url.replace("http://", "ws://") + "/api/v1/ws?view=hosts"
                async with open_websocket_url(url) as ws:
                    reset = await next_update(ws)
                    assert reset["reset"] is True and reset["version"] == 5
                    assert len(reset["nodes"]) == 5


async def _version_is(client: httpx.AsyncClient, server: ServerProcess, version: int) -> bool:
    stats = await get(client, server, "/api/v1/query/stats")
    return bool(stats["topology"]["version"] == version)


async def test_the_bus_stopped_mid_run_gets_503s_loses_no_202d_report_and_recovers(
        request: pytest.FixtureRequest, postgres_url: str) -> None:
    with own_nats_server() as bus, two_replicas(request, postgres_url, *bus_args(bus.url, "outage")) as (a, b):
        async with httpx.AsyncClient(timeout=30) as client:
            await eventually(lambda: ready(client, a))
            await eventually(lambda: ready(client, b))
            accepted: set[str] = set()
            refused = 0
            index = 0

            async def post_one(server: ServerProcess) -> int:
                nonlocal index, refused
                index += 1
                response = await client.post(f"{server.base_url}/api/v1/reports",
                                             json=host_report(index, timestamp=time.time(), **SMALL))
                if response.status_code == 202:
                    accepted.add(f"host:host-{index}")
                else:
                    assert response.status_code == 503, response.text
                    assert response.json()["error"]["code"] == "bus_unavailable"
                    assert int(response.headers["Retry-After"]) > 0
                    refused += 1
                return response.status_code

            for _ in range(10):
                assert await post_one(a) == 202
                assert await post_one(b) == 202
            await eventually(lambda: _hosts_are(client, b, accepted))
            before = await host_nodes(client, a)

            bus.stop()
            # Reports in flight as the bus goes are answered either way; then 503.
            await eventually(lambda: _answered(post_one(a), 503))
            await eventually(lambda: _answered(post_one(b), 503))
            # Queries still answer, from the last state.
            assert await host_nodes(client, a) == before
            assert await host_nodes(client, b) >= before

            bus.start()
            await eventually(lambda: _answered(post_one(a), 202))
            await eventually(lambda: _answered(post_one(b), 202))
            # Every report answered 202 is in both replicas' topology.
            await eventually(lambda: _hosts_are(client, a, accepted))
            await eventually(lambda: _hosts_are(client, b, accepted))
            assert refused >= 2
            assert "reconnected to the bus" in a.stderr()


async def _answered(posting: Any, status: int) -> bool:
    return bool(await posting == status)


async def _hosts_are(client: httpx.AsyncClient, server: ServerProcess, expected: set[str]) -> bool:
    """Every host of ``expected`` is there (a report answered 503 as the bus
    went may still have reached it: the probe resends it anyway)."""
    return expected <= await host_nodes(client, server)


async def test_replicas_killed_and_one_restarted_rebuild_topology_and_history(
        request: pytest.FixtureRequest, postgres_url: str, nats_url: str, stream: str) -> None:
    """100 hosts with 10 minutes of dated reports; ``kill -9`` both replicas,
    start one: the same nodes, the same metric series."""
    hosts, rounds = 100, 5
    now = time.time()
    async with httpx.AsyncClient(timeout=30) as client:
        with two_replicas(request, postgres_url, *bus_args(nats_url, stream), "--rate-per-address", "1000000",
                          "--reports-per-address", "1000000") as (a, b):
            await eventually(lambda: ready(client, a))
            for step in range(rounds):  # every two and a half minutes over ten minutes
                at = now - 600 + step * 150
                for index in range(1, hosts + 1):
                    server = a if index % 2 else b
                    report = host_report(index, timestamp=at, cpu=float(step * 10 + index % 7), **SMALL)
                    posted = await client.post(f"{server.base_url}/api/v1/reports", json=report)
                    assert posted.status_code == 202, posted.text
            await eventually(lambda: _merged(client, b, hosts * rounds))
            nodes_before = (await get(client, b, "/api/v1/query/topology"))["topology"]["nodes"]
            series_before = {i: await _series(client, b, i) for i in range(1, hosts + 1, 9)}
            assert all(len(points) == rounds for points in series_before.values()), series_before
            a.proc.kill()  # type: ignore[union-attr]  # started by the with statement
            b.proc.kill()  # type: ignore[union-attr]  # started by the with statement
            a.wait()
            b.wait()
        with replica(postgres_url, *bus_args(nats_url, stream)) as c:
            await eventually(lambda: ready(client, c), deadline=60)
            nodes_after = (await get(client, c, "/api/v1/query/topology"))["topology"]["nodes"]
            assert set(nodes_after) == set(nodes_before)
            for index, points in series_before.items():
                assert await _series(client, c, index) == points, index


async def _merged(client: httpx.AsyncClient, server: ServerProcess, count: int) -> bool:
    stats = await get(client, server, "/api/v1/query/stats")
    return bool(stats["bus"]["merged_sequence"] >= count and stats["topology"]["pending_reports"] == 0)


async def _series(client: httpx.AsyncClient, server: ServerProcess, index: int) -> list[dict[str, Any]]:
    details = await get(client, server, f"/api/v1/query/nodes/host:host-{index}", duration="1h")
    assert "since" not in details["metrics_history"]  # rebuilt from the stream: not since this process began
    points: list[dict[str, Any]] = details["metrics_history"]["points"]
    return points


async def test_a_replica_started_while_the_bus_is_away_is_not_ready_until_it_reaches_it(
        request: pytest.FixtureRequest, postgres_url: str) -> None:
    with own_nats_server() as bus:
        bus.stop()
        with replica(postgres_url, *bus_args(bus.url, "late")) as a:
            async with httpx.AsyncClient(timeout=30) as client:
                answer = await client.get(f"{a.base_url}/health/ready")
                assert answer.status_code == 503 and "bus" in answer.json()["reason"]
                posted = await client.post(f"{a.base_url}/api/v1/reports",
                                           json=host_report(1, timestamp=time.time(), **SMALL))
                assert posted.status_code == 503 and posted.headers["Retry-After"]
                # Its views are refused too, not answered from a state the others moved past.
                for path in ("/api/v1/query/topology?view=hosts", "/api/v1/query/nodes/host:host-1",
                             "/api/v1/agents/list"):
                    refused = await client.get(f"{a.base_url}{path}")
                    assert refused.status_code == 503 and refused.headers["Retry-After"], (path, refused.text)
                    assert refused.json()["error"]["code"] == "catching_up", refused.text
                with pytest.raises(ConnectionRejected) as live:
                    async with open_websocket_url(a.base_url.replace("http://", "ws://") + "/api/v1/ws?view=hosts"):
                        pass
                assert live.value.status_code == 503
                bus.start()
                await eventually(lambda: ready(client, a))
                posted = await client.post(f"{a.base_url}/api/v1/reports",
                                           json=host_report(1, timestamp=time.time(), **SMALL))
                assert posted.status_code == 202, posted.text
                assert await host_nodes(client, a) == {"host:host-1"}
                assert "cannot reach the bus" in a.stderr() and "connected to the bus" in a.stderr()


async def test_a_bus_that_stops_answering_is_noticed_and_said_within_seconds(
        request: pytest.FixtureRequest, postgres_url: str) -> None:
    """A frozen nats-server keeps the connection open: the replica's pings find
    it (``PING_INTERVAL``), not nats-py's default of minutes, during which it
    said it was connected and caught up while it could neither publish nor read."""
    with own_nats_server() as bus, replica(postgres_url, *bus_args(bus.url, "frozen")) as a:
        async with httpx.AsyncClient(timeout=30) as client:
            await eventually(lambda: ready(client, a))
            bus.freeze()

            async def said_lost() -> bool:
                stats = await get(client, a, "/api/v1/query/stats")
                health = await get(client, a, "/health")
                return not stats["bus"]["connected"] and health["services"]["bus"] == "reconnecting"

            await eventually(said_lost, deadline=60.0)
            assert "lost the bus" in a.stderr()
            bus.freeze(False)
            await eventually(lambda: _connected(client, a), deadline=60.0)
            posted = await client.post(f"{a.base_url}/api/v1/reports", json=host_report(1, timestamp=time.time(),
                                                                                          **SMALL))
            assert posted.status_code == 202, posted.text
        assert a.stop() == 0
        # Its own close at shutdown is no lost bus.
        assert a.stderr().count("lost the bus") == 1
        # Said once reports came again, not after each read that timed out while the bus was away.
        assert a.stderr().count("reading the report stream again") <= 1


async def _connected(client: httpx.AsyncClient, server: ServerProcess) -> bool:
    return bool((await get(client, server, "/api/v1/query/stats"))["bus"]["connected"])


async def test_the_stream_is_bounded_on_the_bus_disk(nats_url: str, stream: str) -> None:
    """max_data_age alone does not bound what many hosts' reports take: the
    stream is created with ``bus.max_bytes`` (JetStream drops the oldest beyond)."""
    with ServerProcess([*bus_args(nats_url, stream), "--bus-max-bytes", "64MiB"]) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            await eventually(lambda: ready(client, server))
        assert await trio.to_thread.run_sync(stream_max_bytes, nats_url, stream) == 64 * 1024**2


async def _agents(client: httpx.AsyncClient, server: ServerProcess) -> set[str]:
    return {row["agent_id"] for row in (await get(client, server, "/api/v1/agents/list"))["agents"]}


async def test_every_replica_shares_max_agents_between_the_addresses_the_reports_came_from(
        request: pytest.FixtureRequest, postgres_url: str, nats_url: str, stream: str) -> None:
    """B learns from the stream which address each report posted to A came
    from: at the limit it makes room for the same probes A does (it used to
    know no address, and left out the report of a second address's probe)."""
    with two_replicas(request, postgres_url, *bus_args(nats_url, stream), "--max-agents", "4") as (a, b):
        async with httpx.AsyncClient(timeout=30) as client, \
                httpx.AsyncClient(timeout=30, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")) as one, \
                httpx.AsyncClient(timeout=30, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.3")) as other:
            await eventually(lambda: ready(client, a))
            await eventually(lambda: ready(client, b))
            for sender, index in ((one, 1), (one, 2), (one, 3), (one, 4), (other, 5)):
                report = host_report(index, timestamp=time.time(), **SMALL)
                assert (await sender.post(f"{a.base_url}/api/v1/reports", json=report)).status_code == 202
            expected = {f"agent-{i}" for i in (2, 3, 4, 5)}
            assert await _agents(client, a) == expected

            async def b_agrees() -> bool:
                return await _agents(client, b) == expected

            await eventually(b_agrees)
