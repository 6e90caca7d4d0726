"""A replica process with a report bus, as an operator runs it: stopped
(SIGTERM) after its bus was lost, and started on a long stream, where it
says it is ready only once its views hold every report of the stream."""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import nats
from nats.js.api import DiscardPolicy
import pytest

from tests.bus_server import OwnNatsServer, publish_dated
from tests.replicas.test_report_bus import bus_args, get, ready
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually

FAST = ("--rate-per-address", "1000000", "--reports-per-address", "1000000", "--local-probe", "false",
        "--max-agents", "100000")


@pytest.fixture
def bus(own_nats: OwnNatsServer) -> OwnNatsServer:
    return own_nats  # tests/conftest.py


async def test_sigterm_after_the_bus_was_lost_stops_cleanly_with_exit_0(bus: OwnNatsServer) -> None:
    with ServerProcess([*bus_args(bus.url, "lost"), *FAST]) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            await eventually(lambda: ready(client, server))
            bus.stop()

            async def lost() -> bool:
                return not (await get(client, server, "/api/v1/query/stats"))["bus"]["connected"]

            await eventually(lost, deadline=30)

            async def reconnecting() -> bool:  # its close then meets a reset socket
                return "cannot reach the bus" in server.stderr()

            await eventually(reconnecting, deadline=30)  # nats-py tried again, and failed
        code = server.stop(signal.SIGTERM)
        log = server.stderr()
    assert code == 0, log[-4000:]
    assert "Traceback" not in log and "ExceptionGroup" not in log, log[-4000:]


def last_sequence(url: str, stream: str) -> int:
    async def read() -> int:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            return int((await nc.jetstream().stream_info(stream)).state.last_seq)
        finally:
            await nc.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(read())).result()


async def test_a_replica_is_ready_only_once_its_views_hold_every_report_of_the_stream(
        bus: OwnNatsServer) -> None:
    """Readiness once the topology merged up to where the stream was read, not
    once the reports were handed to the roster: a load balancer that sends a
    client to a replica it was told is ready must not show it fewer hosts."""
    hosts, rounds = 1500, 4
    now = time.time()
    # The stream made as a replica makes it (its limits), then filled as replicas fill it.
    with ServerProcess([*bus_args(bus.url, "long"), *FAST]) as first:
        async with httpx.AsyncClient(timeout=30) as client:
            await eventually(lambda: ready(client, first))
    publish_dated(bus.url, "long", [(index, now - 60 + step * 5) for step in range(rounds)
                                    for index in range(1, hosts + 1)])
    end = last_sequence(bus.url, "long")
    assert end == hosts * rounds
    with ServerProcess([*bus_args(bus.url, "long"), *FAST]) as second:
        async with httpx.AsyncClient(timeout=30) as client:
            await eventually(lambda: ready(client, second), deadline=120)
            view = (await get(client, second, "/api/v1/query/topology", view="hosts", fields="id"))["topology"]
            stats = await get(client, second, "/api/v1/query/stats")
    assert stats["topology"]["stream_sequence"] >= end
    assert stats["bus"]["merged_sequence"] >= end
    assert view["version"] >= end
    assert len(view["nodes"]) == hosts


def set_stream_limits(url: str, stream: str, **limits: object) -> None:
    """Change the stream's configuration as an operator would (``nats stream edit``)."""
    async def change() -> None:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            js = nc.jetstream()
            config = (await js.stream_info(stream)).config
            for name, value in limits.items():
                setattr(config, name, value)
            await js.update_stream(config)
        finally:
            await nc.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(change())).result()


async def test_a_stream_that_refuses_reports_is_said_in_the_log_and_its_size_limit_is_a_413(
        bus: OwnNatsServer) -> None:
    """A stream full (max_bytes, discard new) refused every report 503 and the
    log said nothing; its per-message limit (max_msg_size) was a 503 too,
    "resend it", which could never be taken."""
    report = host_report(1, timestamp=time.time(), containers=2, processes=20, connections=10)
    with ServerProcess([*bus_args(bus.url, "limits"), *FAST]) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            await eventually(lambda: ready(client, server))
            url = f"{server.base_url}/api/v1/reports"
            set_stream_limits(bus.url, "limits", max_msg_size=1000)
            answer = await client.post(url, json=report)
            assert answer.status_code == 413, answer.text
            error = answer.json()["error"]
            assert "max_msg_size" in error["message"] and error["details"]["key"] == "stream limits max_msg_size"
            set_stream_limits(bus.url, "limits", max_msg_size=-1, max_bytes=1, discard=DiscardPolicy.NEW)
            answer = await client.post(url, json=report)
            assert answer.status_code == 503 and answer.json()["error"]["code"] == "bus_unavailable", answer.text
            assert "the report bus refused a report" in server.stderr()
            set_stream_limits(bus.url, "limits", max_bytes=-1, discard=DiscardPolicy.OLD)
            assert (await client.post(url, json=report)).status_code == 202
