"""Container controls in the topology, against a real server, on both report
paths: the containers of a report an enrolled agent signed offer them, those of
an unsigned report (the local probe's, any open report) none, as the control
endpoint, which refuses to control those, has it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.bus_server import report_path
from tests.integration.test_commands import Operator, fresh, setup
from tests.server_process import ServerProcess
from tests.synthetic import container_hex, host_report
from tests.waiting import eventually


@pytest.fixture(scope="module", params=["in-process", "bus"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with report_path(request.param) as flags, ServerProcess(list(flags)) as process:
        yield process


def _report(probe: str, *, at: float | None = None, processes: int = 2) -> dict[str, Any]:
    report = host_report(0, timestamp=at or time.time(), containers=2, processes=processes, connections=0,
                         agent_prefix=probe)
    report["hostname"] = report["host_info"]["hostname"] = probe
    return report


def _container(probe: str) -> str:
    """The node id of the first (running) container of ``_report(probe)``."""
    return f"container:{container_hex(f'{probe}-0', 1)}"


async def _metadata(client: httpx.AsyncClient, server: ServerProcess, node_id: str,
                    until: Any = lambda metadata: True) -> dict[str, Any]:
    """The node's metadata once it is shown and ``until`` holds of it."""
    async def shown() -> dict[str, Any] | None:
        response = await client.get(f"{server.base_url}/api/v1/query/nodes/{node_id}")
        if response.status_code != 200:
            return None
        metadata: dict[str, Any] = response.json().get("node", response.json())["metadata"]
        return metadata if until(metadata) else None

    return await eventually(shown)


def _control(server: ServerProcess, node_id: str, action: str = "restart") -> str:
    return f"{server.base_url}/api/v1/query/nodes/{node_id}/controls/{action}"


# Large: ~300 KB, partitioned where it is received, off the event loop
# (``_reports.OFF_LOOP_BYTES``), and within an agent's default memory budget.
@pytest.mark.parametrize("processes", [2, 1200], ids=["small", "large"])
async def test_only_the_containers_of_signed_reports_offer_controls(server: ServerProcess, processes: int) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        operator, agent = await setup(server, client)
        signed_probe, open_probe = fresh("probe"), fresh("probe")
        signed = await agent.signed_post(client, "/api/v1/reports", _report(signed_probe, processes=processes))
        assert signed.status_code == 202, signed.text
        unsigned = await client.post(f"{server.base_url}/api/v1/reports", json=_report(open_probe, processes=processes))
        assert unsigned.status_code == 202, unsigned.text

        offered = await _metadata(client, server, _container(signed_probe))
        assert offered["state"] == "running" and "restart" in {c["id"] for c in offered["controls"]}
        assert (await client.post(_control(server, _container(signed_probe)), json={},
                                  headers=operator.auth)).status_code == 202
        shown = await _metadata(client, server, _container(open_probe))
        assert shown["state"] == "running" and "controls" not in shown
        refused = await client.post(_control(server, _container(open_probe)), json={}, headers=operator.auth)
        assert (refused.status_code, refused.json()["error"]["code"]) == (404, "node_not_found")


async def test_a_decommissioned_probe_reporting_unsigned_offers_no_controls(server: ServerProcess) -> None:
    """Its unsigned reports are the same as its signed ones were (the same
    shape): its containers' nodes are not kept as they were, controls and all."""
    async with httpx.AsyncClient(timeout=30) as client:
        operator, agent = await setup(server, client)
        probe = fresh("probe")
        at = time.time()
        assert (await agent.signed_post(client, "/api/v1/reports", _report(probe, at=at))).status_code == 202
        assert "controls" in await _metadata(client, server, _container(probe))
        admin = Operator(server, fresh("admin"), operator.tenant, "ADMIN")
        gone = await client.post(operator.url(agent.deployment_hash, f"/agents/{agent.agent_id}/decommission"),
                                 headers=admin.auth)
        assert gone.status_code == 200, gone.text
        again = await client.post(f"{server.base_url}/api/v1/reports", json=_report(probe, at=at + 15))
        assert again.status_code == 202, again.text
        await _metadata(client, server, _container(probe), until=lambda metadata: "controls" not in metadata)
