"""The web UI says its live view is ``behind`` when it has not reached the
version the stats gave at their previous poll (``stats.topology.version``).
With ``--protect-reads`` that version was missing for a tenant reader (an
ADMIN had it under ``server.topology`` only): the indicator never showed (a
reviewer). Every reader who may open the live view reads it where the UI
does, the version the live view itself is sent (every version reaches every
client, as a diff holding nothing of other tenants' or in a reset)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.integration.test_commands import Operator, enroll, fresh
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually


@pytest.fixture(scope="module")
def protected() -> Iterator[ServerProcess]:
    with ServerProcess(["--protect-reads", "true"]) as process:
        yield process


def _report(probe: str) -> dict[str, Any]:
    report = host_report(0, timestamp=time.time(), containers=1, processes=1, connections=0, agent_prefix=probe)
    report["hostname"] = report["host_info"]["hostname"] = probe
    return report


async def _version(client: httpx.AsyncClient, server: ServerProcess, reader: Operator) -> int:
    response = await client.get(f"{server.base_url}/api/v1/query/stats", headers=reader.auth)
    assert response.status_code == 200, response.text
    version = response.json()["topology"].get("version")
    assert isinstance(version, int), response.json()["topology"]
    return version


async def _live_version(server: ServerProcess, reader: Operator) -> int:
    """The version of the reset the live view opens with, for ``reader``."""
    url = server.base_url.replace("http://", "ws://") + "/api/v1/ws?view=hosts"
    async with open_websocket_url(url, subprotocols=["trioscope", f"bearer.{server.user_token(reader.user_id, reader.tenant, reader.role)}"]) as ws:
        with trio.fail_after(10):
            while (message := orjson.loads(await ws.get_message()))["type"] != "topology_update":
                pass
    assert message["payload"]["reset"] is True
    return int(message["payload"]["version"])


async def test_every_reader_of_the_live_view_reads_the_version_where_the_ui_does(protected: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        owner = Operator(protected, fresh("user"), fresh("tenant"))
        agent = await enroll(client, protected, owner)
        readers = (owner, Operator(protected, fresh("user"), owner.tenant, "VIEWER"),
                   Operator(protected, fresh("user"), fresh("tenant"), "VIEWER"),  # sees nothing reported
                   Operator(protected, fresh("user"), fresh("tenant"), "ADMIN"))
        before = {reader.user_id: await _version(client, protected, reader) for reader in readers}
        response = await agent.signed_post(client, "/api/v1/reports", _report(fresh("probe")))
        assert response.status_code == 202, response.text
        # Another tenant's report moves the version each of them reads, as it moves their live views'.
        response = await client.post(f"{protected.base_url}/api/v1/reports", json=_report(fresh("probe")))
        assert response.status_code == 202, response.text

        async def moved() -> bool:
            return all([await _version(client, protected, r) > before[r.user_id] for r in readers])

        await eventually(moved)
        for reader in readers:
            stats = await _version(client, protected, reader)
            live = await _live_version(protected, reader)
            assert live >= stats, (reader.role, live, stats)  # the live view reaches what the stats say
            assert await _version(client, protected, reader) >= live
        admin = readers[-1]
        response = await client.get(f"{protected.base_url}/api/v1/query/stats", headers=admin.auth)
        assert response.json()["server"]["topology"]["version"] >= live  # the ADMIN's server figures keep theirs
