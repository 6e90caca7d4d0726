"""Who may attach nodes to a deployment, against a real server: only a probe
that signs with the deployment agent's credentials. Reports stay open (the
seed's quick start), but an unsigned report's nodes belong to no deployment and
offer no controls, and a control is delivered only to the agent that reported
the container."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.test_commands import Operator, enroll, fresh
from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent
from tests.synthetic import container_hex, host_report
from tests.waiting import eventually
from trioscope.domain.topology import container_id, node_scope


pytestmark = pytest.mark.usefixtures("database")  # every test on each store backend (integration/conftest.py)


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[ServerProcess]:
    with ServerProcess() as process:
        yield process


async def _victim(server: ServerProcess, client: httpx.AsyncClient) -> tuple[Operator, StatusAgent]:
    operator = Operator(server, fresh("user"), fresh("tenant"))
    return operator, await enroll(client, server, operator)


def _report(probe: str, *, at: float | None = None) -> dict[str, Any]:
    report = host_report(0, timestamp=at or time.time(), containers=2, processes=2, connections=0,
                         agent_prefix=probe)
    report["hostname"] = report["host_info"]["hostname"] = probe
    return report


async def _node_shown(client: httpx.AsyncClient, server: ServerProcess, node_id: str) -> None:
    async def shown() -> bool:
        return (await client.get(f"{server.base_url}/api/v1/query/nodes/{node_id}")).status_code == 200

    await eventually(shown)


async def _enrolled_container(client: httpx.AsyncClient, server: ServerProcess, operator: Operator,
                              agent: StatusAgent) -> tuple[str, str]:
    """A probe enrolled as ``agent`` (of a deployment of ``operator``'s)
    reports (signed); answers its id and one of its containers' node id, shown."""
    probe = fresh("probe")
    assert (await agent.signed_post(client, "/api/v1/reports", _report(probe))).status_code == 202
    node_id = container_id(container_hex(f"{probe}-0", 1), node_scope(operator.tenant))
    await _node_shown(client, server, node_id)
    return probe, node_id


def _control(server: ServerProcess, node_id: str, action: str = "restart") -> str:
    return f"{server.base_url}/api/v1/query/nodes/{node_id}/controls/{action}"


async def test_a_registration_cannot_claim_a_deployment_without_its_credentials(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        _, agent = await _victim(server, client)
        claim = {"agent_id": fresh("attacker"), "metadata": {"deployment_hash": agent.deployment_hash}}
        refused = await client.post(f"{server.base_url}/api/v1/agents/register", json=claim)
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "unauthenticated_deployment")
        forged = await client.post(f"{server.base_url}/api/v1/agents/register", json=claim,
                                   headers={"Authorization": "Bearer not-the-agent-token"})
        assert (forged.status_code, forged.json()["error"]["code"]) == (401, "invalid_token")
        named = await client.post(f"{server.base_url}/api/v1/agents/register",
                                  json={"agent_id": fresh("attacker"), "metadata": {"command_agent_id": agent.agent_id}})
        assert named.status_code == 400 and "command_agent_id" in named.json()["error"]["message"]
        listed = (await client.get(f"{server.base_url}/api/v1/agents/list")).json()["agents"]
        assert not any(row["metadata"].get("deployment_hash") == agent.deployment_hash for row in listed)


async def test_forged_nodes_offer_no_controls_and_the_real_agent_receives_nothing(server: ServerProcess) -> None:
    """The attack: fake containers reported for someone's deployment, then an
    operator's "restart" on one of them. It used to reach the real agent."""
    async with httpx.AsyncClient() as client:
        operator, agent = await _victim(server, client)
        attacker = fresh("attacker")
        await client.post(f"{server.base_url}/api/v1/agents/register",
                          json={"agent_id": f"{attacker}-0", "metadata": {"deployment_hash": agent.deployment_hash}})
        accepted = await client.post(f"{server.base_url}/api/v1/reports", json=_report(attacker))
        assert accepted.status_code == 202  # reports stay open...
        node_id = f"container:{container_hex(f'{attacker}-0', 1)}"
        await _node_shown(client, server, node_id)

        refused = await client.post(_control(server, node_id), json={}, headers=operator.auth)
        assert (refused.status_code, refused.json()["error"]["code"]) == (404, "node_not_found")  # ...controls not
        assert await agent.poll(client, timeout=1) is None


async def test_unsigned_reports_cannot_speak_for_an_enrolled_probe(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        _, agent = await _victim(server, client)
        probe = fresh("probe")
        assert (await agent.signed_post(client, "/api/v1/reports", _report(probe))).status_code == 202
        hijack = _report(probe, at=time.time() + 60)
        hijack["docker_info"]["containers"][0]["id"] = "f" * 64
        refused = await client.post(f"{server.base_url}/api/v1/reports", json=hijack)
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "signature_required")
        again = await client.post(f"{server.base_url}/api/v1/agents/register", json={"agent_id": f"{probe}-0"})
        assert (again.status_code, again.json()["error"]["code"]) == (401, "signature_required")
        assert (await client.get(f"{server.base_url}/api/v1/query/nodes/container:{'f' * 64}")).status_code == 404
        # Nor keep it looking alive: its heartbeats are signed too.
        beat = await client.post(f"{server.base_url}/api/v1/agents/heartbeat/{probe}-0")
        assert (beat.status_code, beat.json()["error"]["code"]) == (401, "signature_required")
        signed = await agent.signed_post(client, f"/api/v1/agents/heartbeat/{probe}-0", {"agent_id": f"{probe}-0"})
        assert signed.status_code == 200, signed.text
        # A signed heartbeat keeps a probe alive; it makes no agent id the signer's.
        stranger = fresh("stranger")
        unknown = await agent.signed_post(client, f"/api/v1/agents/heartbeat/{stranger}-0", {})
        assert unknown.status_code == 404, unknown.text
        unsigned = _report(stranger)
        assert (await client.post(f"{server.base_url}/api/v1/reports", json=unsigned)).status_code == 202


async def test_a_control_goes_to_the_agent_that_reported_the_container(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await _victim(server, client)
        probe = fresh("probe")
        assert (await agent.signed_post(client, "/api/v1/reports", _report(probe))).status_code == 202
        real = container_hex(f"{probe}-0", 1)
        # Someone else reports the same container, newer, with its own metadata:
        # unsigned, a node of its own (no controls), the enrolled one untouched.
        echo = _report(fresh("echo"), at=time.time() + 30)
        echo["docker_info"]["containers"][1] |= {"id": real, "name": "/evil", "state": "running"}
        assert (await client.post(f"{server.base_url}/api/v1/reports", json=echo)).status_code == 202
        await _node_shown(client, server, container_id(real))
        node_id = container_id(real, node_scope(operator.tenant))
        await _node_shown(client, server, node_id)
        shown = (await client.get(f"{server.base_url}/api/v1/query/nodes/{node_id}")).json()["node"]
        assert shown["label"] != "evil" and "controls" in shown["metadata"]

        created = await client.post(_control(server, node_id), json={}, headers=operator.auth)
        assert created.status_code == 202, created.text
        assert created.json()["deployment_hash"] == agent.deployment_hash
        delivered = await agent.poll(client, timeout=5)
        assert delivered is not None and delivered.name == "docker.restart"
        assert delivered.params["container"] == real


async def test_a_decommissioned_agents_containers_lose_their_controls(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await _victim(server, client)
        probe, node_id = await _enrolled_container(client, server, operator, agent)
        admin = Operator(server, fresh("admin"), operator.tenant, "ADMIN")
        gone = await client.post(operator.url(agent.deployment_hash, f"/agents/{agent.agent_id}/decommission"),
                                 headers=admin.auth)
        assert gone.status_code == 200, gone.text
        refused = await client.post(_control(server, node_id), json={}, headers=operator.auth)
        assert refused.status_code == 404
        # With its credentials gone, the probe id is open again (no deployment).
        assert (await client.post(f"{server.base_url}/api/v1/reports", json=_report(probe))).status_code == 202


async def test_one_probe_agent_id_is_reported_by_one_enrolled_agent(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        _, first = await _victim(server, client)
        _, second = await _victim(server, client)
        probe = fresh("probe")
        assert (await first.signed_post(client, "/api/v1/reports", _report(probe))).status_code == 202
        taken = await second.signed_post(client, "/api/v1/reports", _report(probe, at=time.time() + 1))
        assert (taken.status_code, taken.json()["error"]["code"]) == (409, "agent_id_taken")


async def test_a_control_for_a_retired_agent_goes_to_no_other_agent(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await _victim(server, client)
        probe, node_id = await _enrolled_container(client, server, operator, agent)
        created = await client.post(_control(server, node_id), json={}, headers=operator.auth)
        assert created.status_code == 202, created.text
        # The deployment enrolls another agent (on another host, say) before delivery.
        token = await client.post(operator.url(agent.deployment_hash, "/enrollment"), headers=operator.auth)
        registered = await client.post(f"{server.base_url}/api/v1/agent/register", json={
            "deployment_hash": agent.deployment_hash, "enrollment_token": token.json()["enrollment_token"]})
        assert registered.status_code == 201, registered.text
        successor = StatusAgent(server.base_url, registered.json()["agent_id"], registered.json()["agent_token"],
                                agent.deployment_hash)
        assert await successor.poll(client, timeout=1) is None
        command = await operator.get(client, agent.deployment_hash, created.json()["command_id"])
        assert command["status"] == "expired" and "another agent may not run it" in command["history"][-1]["detail"]["reason"]
        assert command["target_agent_id"] == agent.agent_id


async def test_a_claim_on_a_probe_id_lapses_once_nothing_signed_reports_under_it() -> None:
    """Another tenant's agent signed one report under a host's probe id: that
    host's enrolled probe got 409 and its unsigned one 401 for good (until a
    restart). The claim lasts while its agent reports under the id; after
    ``--stale-node-threshold`` of silence another signer takes it, and holds it."""
    with ServerProcess(["--stale-node-threshold", "2s"]) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            _, squatter = await _victim(server, client)
            owner_operator, owner = await _victim(server, client)
            probe = fresh("host")
            assert (await squatter.signed_post(client, "/api/v1/reports", _report(probe))).status_code == 202
            taken = await owner.signed_post(client, "/api/v1/reports", _report(probe))
            assert (taken.status_code, taken.json()["error"]["code"]) == (409, "agent_id_taken")
            unsigned = await client.post(f"{server.base_url}/api/v1/reports", json=_report(probe))
            assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (401, "signature_required")

            async def owner_reports() -> bool:
                return (await owner.signed_post(client, "/api/v1/reports", _report(probe))).status_code == 202
            await eventually(owner_reports, deadline=60)
            node_id = container_id(container_hex(f"{probe}-0", 1), node_scope(owner_operator.tenant))
            await _node_shown(client, server, node_id)
            again = await squatter.signed_post(client, "/api/v1/reports", _report(probe))
            assert (again.status_code, again.json()["error"]["code"]) == (409, "agent_id_taken")
            # An unsigned probe (the server's local one, say) has the id back the same way.
            local = fresh("local")
            assert (await squatter.signed_post(client, "/api/v1/reports", _report(local))).status_code == 202

            async def local_reports() -> bool:
                answer = await client.post(f"{server.base_url}/api/v1/reports", json=_report(local))
                return answer.status_code == 202
            await eventually(local_reports, deadline=60)
        assert server.stderr().count("reported nothing under it for agents.stale_threshold") == 2
