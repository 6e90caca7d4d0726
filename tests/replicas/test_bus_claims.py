"""An enrolled agent's claim on a probe agent id (its signed reports) holds on
every replica: each learns it from the report stream. Held only where the
signed request arrived, another replica answered 202 to an unsigned report
under the id, and every replica merged it; and it showed the agent's own
tenant neither the probe's details nor its history."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import nats
import pytest

from tests.bus_server import own_nats_server
from tests.integration.test_commands import Operator, enroll, fresh
from tests.replicas.conftest import two_replicas
from tests.replicas.test_bus_hostile_messages import envelope
from tests.replicas.test_report_bus import bus_args, ready
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually
from trioscope.bus._client import agent_subject
from trioscope.wire import decode_report, encode

STREAM = "claims"


def _report(probe: str, hostname: str, at: float) -> dict[str, Any]:
    report = host_report(0, timestamp=at, containers=1, processes=2, connections=0, agent_prefix=probe)
    report["hostname"] = report["host_info"]["hostname"] = hostname
    return report


def _publish_unsigned(url: str, document: dict[str, Any]) -> int:
    """``document`` on the stream as a replica that did not know the claim
    would have put it there (unsigned); its sequence."""
    async def run() -> int:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            wire = encode(decode_report(document))
            ack = await nc.jetstream().publish(agent_subject(STREAM, str(wire["agent_id"])),
                                               envelope(wire, time.time()), stream=STREAM)
            return int(ack.seq)
        finally:
            await nc.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(run())).result()


async def test_a_claim_made_on_one_replica_holds_on_the_other(request: pytest.FixtureRequest,
                                                              postgres_url: str) -> None:
    with own_nats_server() as bus, two_replicas(request, postgres_url, *bus_args(bus.url, STREAM),
                                                "--protect-reads", "true") as (a, b):
        async with httpx.AsyncClient(timeout=30) as client:
            await eventually(lambda: ready(client, a))
            await eventually(lambda: ready(client, b))
            operator = Operator(a, fresh("user"), fresh("tenant"))
            agent = await enroll(client, a, operator)
            probe = fresh("probe")
            agent_id = f"{probe}-0"
            signed = _report(probe, "real-host", time.time())
            assert (await agent.signed_post(client, "/api/v1/reports", signed)).status_code == 202

            async def latest(server: ServerProcess) -> Any:
                response = await client.get(f"{server.base_url}/api/v1/query/agents/{agent_id}/latest",
                                            headers=operator.auth)
                return response.json() if response.status_code == 200 else None

            async def b_shows() -> bool:  # B answered 404 agent_not_found to the agent's own tenant
                return await latest(b) is not None

            await eventually(b_shows)
            hijack = _report(probe, "evil-host", time.time() + 1)
            for server in (a, b):
                refused = await client.post(f"{server.base_url}/api/v1/reports", json=hijack)
                assert (refused.status_code, refused.json()["error"]["code"]) == (401, "signature_required"), \
                    refused.text

            # One that reached the stream from a replica that did not know the claim yet: merged by none.
            sequence = _publish_unsigned(bus.url, hijack)

            for server in (a, b):
                await eventually(lambda: _merged_admin(client, server, sequence))
                shown = await latest(server)
                assert shown is not None and shown["report"]["hostname"] == "real-host", shown
                assert "evil-host" not in (await client.get(f"{server.base_url}/api/v1/query/topology",
                                                            params={"view": "hosts"},
                                                            headers=operator.auth)).text


async def _merged_admin(client: httpx.AsyncClient, server: ServerProcess, sequence: int) -> bool:
    admin = Operator(server, "claims-admin", "claims-admin-tenant", "ADMIN")
    stats = (await client.get(f"{server.base_url}/api/v1/query/stats", headers=admin.auth)).json()
    return bool(stats["bus"]["merged_sequence"] >= sequence
                and stats["server"]["topology"]["pending_reports"] == 0)
