"""Container controls in the topology, against a real server, on both report
paths: the containers of a report an enrolled agent signed offer them, those of
an unsigned report (the local probe's, any open report) none, as the control
endpoint, which refuses to control those, has it; those an agent enrolled
without (``--allow``) neither offered nor accepted; unknown controls and bad
parameters refused when asked. And a container two probes report, one
listing it from its engine and one inferring it from cgroups, shown as listed.
The nodes of an enrolled agent's reports carry its tenant's scope (``node_scope``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.bus_server import report_path
from tests.integration.test_commands import Operator, fresh, setup
from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent
from tests.synthetic import container_hex, host_report
from tests.waiting import eventually
from trioscope.domain.topology import container_id, node_scope, process_id


@pytest.fixture(scope="module", params=["in-process", "bus"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with report_path(request.param) as flags, ServerProcess(list(flags)) as process:
        process.wait_ready()
        yield process


def _report(probe: str, *, at: float | None = None, processes: int = 2) -> dict[str, Any]:
    report = host_report(0, timestamp=at or time.time(), containers=2, processes=processes, connections=0,
                         agent_prefix=probe)
    report["hostname"] = report["host_info"]["hostname"] = probe
    return report


def _container(probe: str, signer: Operator | None = None) -> str:
    """The node id of the first (running) container of ``_report(probe)``, as
    an agent enrolled in a deployment of ``signer``'s reports it (None: unsigned)."""
    return container_id(container_hex(f"{probe}-0", 1), None if signer is None else node_scope(signer.tenant))


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

        offered = await _metadata(client, server, _container(signed_probe, operator))
        assert offered["state"] == "running" and "restart" in {c["id"] for c in offered["controls"]}
        assert (await client.post(_control(server, _container(signed_probe, operator)), json={},
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
        assert "controls" in await _metadata(client, server, _container(probe, operator))
        admin = Operator(server, fresh("admin"), operator.tenant, "ADMIN")
        gone = await client.post(operator.url(agent.deployment_hash, f"/agents/{agent.agent_id}/decommission"),
                                 headers=admin.auth)
        assert gone.status_code == 200, gone.text
        again = await client.post(f"{server.base_url}/api/v1/reports", json=_report(probe, at=at + 15))
        assert again.status_code == 202, again.text
        # Unsigned, its nodes are named as any unsigned report's: the enrolled ones are gone.
        await _metadata(client, server, _container(probe), until=lambda metadata: "controls" not in metadata)
        assert (await client.get(f"{server.base_url}/api/v1/query/nodes/{_container(probe, operator)}")).status_code == 404


async def _enroll(client: httpx.AsyncClient, server: ServerProcess, operator: Operator, capabilities: list[str],
                  version: str) -> StatusAgent:
    """An agent of a new deployment of ``operator``'s, enrolled as the probe
    enrolls: its ``--allow`` list as its capabilities."""
    deployment = await operator.create_deployment(client)
    response = await client.post(f"{server.base_url}/api/v1/agent/register", json={
        "deployment_hash": deployment["deployment_hash"], "enrollment_token": deployment["enrollment_token"],
        "capabilities": capabilities, "agent_version": version, "system_info": {"os": "Linux"}})
    assert response.status_code == 201, response.text
    body = response.json()
    return StatusAgent(server.base_url, body["agent_id"], body["agent_token"], deployment["deployment_hash"])


def _ids(controls: list[dict[str, Any]]) -> list[str]:
    return [c["id"] for c in controls]


async def test_a_probes_allow_list_bounds_the_controls_offered_and_accepted(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        operator = Operator(server, fresh("user"), fresh("tenant"))
        agent = await _enroll(client, server, operator, ["docker.logs", "docker.inspect"], "trioscope-probe")
        probe = fresh("probe")
        assert (await agent.signed_post(client, "/api/v1/reports", _report(probe))).status_code == 202
        node_id = _container(probe, operator)
        offered = await _metadata(client, server, node_id)
        assert offered["state"] == "running" and _ids(offered["controls"]) == ["logs", "inspect"]

        for action in ("stop", "restart", "pause", "exec"):
            # Each with parameters it takes (argv for exec; another control takes none such: 400).
            body = {"parameters": {"argv": ["ls"]}} if action == "exec" else {}
            refused = await client.post(_control(server, node_id, action), json=body, headers=operator.auth)
            assert refused.status_code == 403, refused.text
            error = refused.json()["error"]
            assert error["code"] == "control_not_allowed" and repr(action) in error["message"]
            assert error["details"] == {"action": action, "agent_id": agent.agent_id, "allowed": ["inspect", "logs"]}
        accepted = await client.post(_control(server, node_id, "logs"), json={"parameters": {"tail": 50}},
                                     headers=operator.auth)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["type"] == "docker.logs"


async def test_a_control_with_a_parameter_the_probe_would_refuse_is_a_400_naming_it(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        operator, agent = await setup(server, client)
        probe = fresh("probe")
        assert (await agent.signed_post(client, "/api/v1/reports", _report(probe))).status_code == 202
        node_id = _container(probe, operator)
        await _metadata(client, server, node_id, until=lambda metadata: "controls" in metadata)
        for action, parameters, field in (("stop", {"timeout": "x"}, "timeout"), ("restart", {"timeout": 601}, "timeout"),
                                          ("logs", {"tail": 0}, "tail"), ("exec", {}, "argv"),
                                          ("exec", {"argv": "rm -rf /"}, "argv")):
            refused = await client.post(_control(server, node_id, action), json={"parameters": parameters},
                                        headers=operator.auth)
            assert refused.status_code == 400, (action, refused.text)
            error = refused.json()["error"]
            assert error["code"] == "invalid_parameters", error
            assert error["details"]["errors"][0]["path"] == f"$.parameters.{field}", error
        accepted = await client.post(_control(server, node_id, "stop"), json={"parameters": {"timeout": 5}},
                                     headers=operator.auth)
        assert accepted.status_code == 202, accepted.text


async def test_an_unknown_control_is_a_404_listing_the_known_ones(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        operator, agent = await setup(server, client)
        probe = fresh("probe")
        assert (await agent.signed_post(client, "/api/v1/reports", _report(probe))).status_code == 202
        await _metadata(client, server, _container(probe, operator), until=lambda metadata: "controls" in metadata)
        refused = await client.post(_control(server, _container(probe, operator), "fly"), json={},
                                    headers=operator.auth)
        assert refused.status_code == 404, refused.text
        error = refused.json()["error"]
        assert error["code"] == "unknown_control" and "'fly'" in error["message"] and "restart" in error["message"]
        assert error["details"]["known"] == ["exec", "inspect", "logs", "pause", "remove", "restart", "start", "stop",
                                             "unpause"]


def _inferring_report(probe: str, hostname: str, container: str, at: float, round_: int) -> dict[str, Any]:
    """A probe without an engine on ``hostname``: it knows ``container`` only
    from one process's cgroup (that process named for ``round_``)."""
    report = host_report(0, timestamp=at, containers=0, processes=1, connections=0, agent_prefix=probe)
    report["hostname"] = report["host_info"]["hostname"] = hostname
    report["docker_info"] = {"containers": []}
    report["processes_info"]["processes"].append({
        "pid": 4242, "ppid": 1, "name": f"round-{round_}", "cmdline": "nginx", "status": "sleeping",
        "cgroup": f"0::/system.slice/docker-{container}.scope\n"})
    return report


async def test_a_container_an_engine_lists_is_shown_as_listed_beside_a_probe_that_infers_it(
        server: ServerProcess) -> None:
    """Two probes of one tenant on one host: one with --docker-host, one without
    an engine. Whichever reported last, the node is the engine's container: its
    name, state and agent, not inferred, and its controls go to that agent."""
    async with httpx.AsyncClient(timeout=30) as client:
        operator, agent = await setup(server, client)
        inferring_agent = await _enroll(client, server, operator, [], "trioscope-probe")
        engine, local = fresh("probe"), fresh("probe")
        cid = container_hex(f"{engine}-0", 0)  # the paused one (synthetic: every seventh)
        scope = node_scope(operator.tenant)
        node_id = container_id(cid, scope)
        base = time.time() - 60
        for round_ in range(3):
            at = base + 15 * round_
            engine_report = _report(engine, at=at)
            assert (await agent.signed_post(client, "/api/v1/reports", engine_report)).status_code == 202
            inferring = _inferring_report(local, engine, cid, at + 5, round_)
            assert (await inferring_agent.signed_post(client, "/api/v1/reports", inferring)).status_code == 202

            async def merged(round_: int = round_) -> dict[str, Any] | None:
                """The containers view's node, once the inferring probe's report of this round is in."""
                answer = await client.get(f"{server.base_url}/api/v1/query/topology",
                                          params={"view": "processes"})
                process = answer.json()["topology"]["nodes"].get(process_id(engine, 4242, scope))
                if process is None or process["label"] != f"round-{round_}":
                    return None
                answer = await client.get(f"{server.base_url}/api/v1/query/topology",
                                          params={"view": "containers"})
                return answer.json()["topology"]["nodes"][node_id]  # type: ignore[no-any-return]

            node = await eventually(merged)
            assert (node["label"], node["status"], node["agent_id"]) == ("svc-0-0", "paused", f"{engine}-0"), node
            assert node["metadata"]["state"] == "paused" and "inferred" not in node["metadata"], node
        details = await _metadata(client, server, node_id)
        assert _ids(details["controls"]) == ["unpause", "stop", "logs", "inspect"]
        sent = await client.post(_control(server, node_id, "unpause"), json={}, headers=operator.auth)
        assert sent.status_code == 202, sent.text
