"""Messages on the report stream that no replica published, put there by
anyone the NATS server lets publish to its subjects: envelopes of the right
format and types whose report the HTTP edge would have refused. Every replica
reads them, at every start for as long as the stream keeps them: each is left
out (``bus_bad_message``, counted in ``skipped_messages``), and the replica
goes on serving its views, WebSockets and node details, as one that starts on
the stream does."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import msgspec
import nats
import orjson
import pytest
from trio_websocket import open_websocket_url

from tests.bus_server import OwnNatsServer
from tests.replicas.test_report_bus import bus_args, get, next_update, ready
from tests.server_process import ServerProcess
from tests.synthetic import host_report, iso
from tests.waiting import eventually
from trioscope.bus._client import agent_subject
from trioscope.bus._envelope import FORMAT, _Frame
from trioscope.domain.agents import PackedReport
from trioscope.domain.topology import View
from trioscope.wire import decode_report, encode

STREAM = "hostile"
SMALL = {"containers": 2, "processes": 4, "connections": 2}


@pytest.fixture
def bus(own_nats: OwnNatsServer) -> OwnNatsServer:
    return own_nats  # tests/conftest.py


def wire_report(index: int, now: float, **changes: Any) -> dict[str, Any]:
    """Host ``index``'s report as the wire JSON a replica publishes, with ``changes``."""
    document: dict[str, Any] = encode(decode_report(host_report(index, timestamp=now - 5, **SMALL)))
    document.update(changes)
    return document


def envelope(document: dict[str, Any], received_at: float) -> bytes:
    """An envelope around ``document`` as any NATS client can write one:
    the right format and types, whatever the report holds."""
    packed = PackedReport.pack(orjson.dumps(document))
    return msgspec.msgpack.encode(_Frame(FORMAT, packed.data, received_at, False, b"", "127.0.0.1"))


def publish(url: str, documents: list[dict[str, Any]], received_at: float) -> int:
    """Put ``documents`` on the stream in order; the last one's sequence."""
    async def run() -> int:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            js = nc.jetstream()
            sequence = 0
            for document in documents:
                subject = agent_subject(STREAM, str(document["agent_id"]) or "empty")
                ack = await js.publish(subject, envelope(document, received_at), stream=STREAM)
                sequence = int(ack.seq)
            return sequence
        finally:
            await nc.close()

    with ThreadPoolExecutor(1) as pool:  # asyncio in a thread of its own: Trio runs in this one
        return pool.submit(lambda: asyncio.run(run())).result()


async def serves_every_view(client: httpx.AsyncClient, server: ServerProcess) -> None:
    for view in View:
        response = await client.get(f"{server.base_url}/api/v1/query/topology", params={"view": view.value})
        assert response.status_code == 200, (view, response.text)
    for node in ("host:host-1", "host:host-2"):
        response = await client.get(f"{server.base_url}/api/v1/query/nodes/{node}")
        assert response.status_code == 200, response.text
    nodes = (await get(client, server, "/api/v1/query/topology", view="hosts"))["topology"]["nodes"]
    assert set(nodes) == {"host:host-1", "host:host-2"}


async def merged(client: httpx.AsyncClient, server: ServerProcess, sequence: int) -> bool:
    stats = await get(client, server, "/api/v1/query/stats")
    return bool(stats["bus"]["merged_sequence"] >= sequence and stats["topology"]["pending_reports"] == 0)


def hostile_agent_ids(now: float) -> list[dict[str, Any]]:
    return [wire_report(3, now, agent_id=""),  # no actor can be named so: every roster crashed on it
            wire_report(4, now, agent_id="agent/4"), wire_report(5, now, agent_id="x" * 129),
            wire_report(6, now, agent_id="agent 6")]


def hostile_times_and_names(now: float) -> list[dict[str, Any]]:
    return [wire_report(3, now, timestamp="9999-12-31T23:59:59.999999Z"),  # every view failed on it
            wire_report(4, now, timestamp=iso(now + 3600)),  # an hour ahead of its receive time: the edge's rule
            wire_report(5, now, timestamp="2026-01-01T00:00:00"),  # no zone: not comparable with the others
            wire_report(6, now, timestamp="1969-12-31T23:59:59Z"),
            wire_report(7, now, hostname="h" * 257)]


@pytest.mark.parametrize("hostile_reports", [hostile_agent_ids, hostile_times_and_names])
async def test_reports_the_edge_would_refuse_are_left_out_by_a_running_replica_and_one_that_starts(
        bus: OwnNatsServer, hostile_reports: Any) -> None:
    now = time.time()
    hostile = hostile_reports(now)
    documents = [wire_report(1, now), *hostile, wire_report(2, now)]
    args = (*bus_args(bus.url, STREAM), "--local-probe", "false")
    async with httpx.AsyncClient(timeout=30) as client:
        with ServerProcess(args) as running:
            await eventually(lambda: ready(client, running), deadline=60)
            url = running.base_url.replace("http://", "ws://") + "/api/v1/ws?view=hosts"
            async with open_websocket_url(url) as ws:
                assert (await next_update(ws))["reset"] is True
                last = publish(bus.url, documents, now)
                seen: set[str] = set()
                while seen != {"host:host-1", "host:host-2"}:
                    update = await next_update(ws)
                    seen |= set(update.get("add", {}).get("nodes", {}))
            await eventually(lambda: merged(client, running, last), deadline=60)
            stats = (await get(client, running, "/api/v1/query/stats"))["bus"]
            assert stats["skipped_messages"] == len(hostile)
            await serves_every_view(client, running)
            log = running.stderr()
            assert running.proc is not None and running.proc.poll() is None, log[-4000:]
        assert log.count("is not a report and was left out") == 1, log[-4000:]  # once a minute; each counted
        assert "gave up" not in log and "Traceback" not in log, log[-4000:]
        # A replica that starts reads them all back: ready, with the same views.
        with ServerProcess(args) as starting:
            await eventually(lambda: ready(client, starting), deadline=60)
            stats = (await get(client, starting, "/api/v1/query/stats"))["bus"]
            assert stats["skipped_messages"] == len(hostile) and stats["merged_sequence"] >= last
            await serves_every_view(client, starting)
            assert "gave up" not in starting.stderr()

