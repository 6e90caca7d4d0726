"""Node details and stats for the one who asks, against a real server: whether
the reader may control a container (the control endpoint's own rule: the
deployment's owner or an admin of its tenant), a node whose id has a newline
in it, and with protected reads the stats of the reader's tenant only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import pytest

from tests.integration.test_commands import Operator, enroll, fresh
from tests.server_process import ServerProcess
from tests.synthetic import container_hex, host_report
from tests.waiting import eventually
from trioscope.domain.topology import container_id, node_scope


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess() as process:
        yield process


@pytest.fixture(scope="module")
def protected() -> Iterator[ServerProcess]:
    with ServerProcess(["--protect-reads", "true"]) as process:
        yield process


def _report(probe: str, hostname: str | None = None) -> dict[str, Any]:
    report = host_report(0, timestamp=time.time(), containers=2, processes=2, connections=0, agent_prefix=probe)
    report["hostname"] = report["host_info"]["hostname"] = hostname or probe
    return report


def _container(probe: str, signer: Operator | None = None) -> str:
    """The node id of the first (running) container of ``_report(probe)``, as
    an agent enrolled in a deployment of ``signer``'s reports it (None: unsigned)."""
    return container_id(container_hex(f"{probe}-0", 1), None if signer is None else node_scope(signer.tenant))


def _node_url(server: ServerProcess, node_id: str) -> str:
    return f"{server.base_url}/api/v1/query/nodes/{quote(node_id, safe='')}"


async def _details(client: httpx.AsyncClient, server: ServerProcess, node_id: str,
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        response = await client.get(_node_url(server, node_id), headers=headers or {})
        return response.json() if response.status_code == 200 else None  # type: ignore[no-any-return]

    return await eventually(found)  # type: ignore[no-any-return]


async def test_the_details_say_whether_the_reader_may_control_the_container(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        owner = Operator(server, fresh("user"), fresh("tenant"))
        agent = await enroll(client, server, owner)
        signed_probe, open_probe = fresh("probe"), fresh("probe")
        response = await agent.signed_post(client, "/api/v1/reports", _report(signed_probe))
        assert response.status_code == 202, response.text
        response = await client.post(f"{server.base_url}/api/v1/reports", json=_report(open_probe))
        assert response.status_code == 202, response.text
        node = _container(signed_probe, owner)

        mine = await _details(client, server, node, owner.auth)
        offered = [c["id"] for c in mine["node"]["metadata"]["controls"]]
        assert mine["controllable"] is True and "restart" in offered
        # Exactly those the control endpoint takes from this user.
        assert [c["id"] for c in mine["controls"]] == offered
        accepted = await client.post(f"{_node_url(server, node)}/controls/restart", json={}, headers=owner.auth)
        assert accepted.status_code == 202, accepted.text

        admin = Operator(server, fresh("user"), owner.tenant, "ADMIN")
        assert (await _details(client, server, node, admin.auth))["controllable"] is True
        for reader in (Operator(server, fresh("user"), owner.tenant),  # an operator of the tenant, not its owner
                       Operator(server, fresh("user"), owner.tenant, "VIEWER"),
                       Operator(server, owner.user_id, fresh("tenant")),  # another tenant's user of that name
                       Operator(server, fresh("user"), fresh("tenant"), "ADMIN")):
            details = await _details(client, server, node, reader.auth)
            assert (details["controllable"], details["controls"]) == (False, []), reader
            refused = await client.post(f"{_node_url(server, node)}/controls/restart", json={}, headers=reader.auth)
            assert refused.status_code in (403, 404), reader  # as the endpoint has it
        anonymous = await _details(client, server, node)
        assert (anonymous["controllable"], anonymous["controls"]) == (False, [])
        assert anonymous["node"]["metadata"]["controls"]  # the node's data is as it was
        # An unsigned report's container: no enrolled agent to control it, for anyone.
        unsigned = await _details(client, server, _container(open_probe), owner.auth)
        assert (unsigned["controllable"], unsigned["controls"]) == (False, [])


async def test_a_node_whose_id_has_a_newline_is_found(server: ServerProcess) -> None:
    """A pod's id is made of its labels, which may hold any character: found
    by its id in the path all the same. (A host name may not: refused.)"""
    async with httpx.AsyncClient(timeout=30) as client:
        report = _report(fresh("probe"))
        pod = f"{fresh('pod')}\nline2"
        report["docker_info"]["containers"][0]["labels"] = {
            "io.kubernetes.pod.name": pod, "io.kubernetes.pod.namespace": "default",
            "io.kubernetes.pod.uid": fresh("uid")}
        response = await client.post(f"{server.base_url}/api/v1/reports", json=report)
        assert response.status_code == 202, response.text
        details = await _details(client, server, f"pod:default/{pod}")
        assert details["node"]["id"] == f"pod:default/{pod}"
        refused = await client.post(f"{server.base_url}/api/v1/reports",
                                    json=_report(fresh("probe"), f"{fresh('host')}\nline2"))
        assert refused.status_code == 400 and "$.hostname" in refused.text, refused.text


async def test_protected_stats_count_what_the_readers_tenant_sees(protected: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        owner = Operator(protected, fresh("user"), fresh("tenant"))
        agent = await enroll(client, protected, owner)
        response = await agent.signed_post(client, "/api/v1/reports", _report(fresh("probe")))
        assert response.status_code == 202, response.text
        response = await client.post(f"{protected.base_url}/api/v1/reports", json=_report(fresh("probe")))
        assert response.status_code == 202, response.text  # unsigned: shown to no tenant (show_unassigned off)

        async def stats(reader: Operator) -> dict[str, Any]:
            response = await client.get(f"{protected.base_url}/api/v1/query/stats", headers=reader.auth)
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]

        async def seen(reader: Operator) -> int:
            response = await client.get(f"{protected.base_url}/api/v1/query/topology", headers=reader.auth)
            return len(response.json()["topology"]["nodes"])

        async def counted() -> dict[str, Any] | None:
            found = await stats(owner)
            return found if found["agents"] == 1 and found["topology"]["nodes"] == await seen(owner) > 0 else None

        ours = await eventually(counted)
        assert ours["topology"]["nodes_by_type"]["container"] == 2
        assert "server" not in ours  # the whole server's figures are an ADMIN's only
        for stranger in (Operator(protected, fresh("user"), fresh("tenant"), "VIEWER"),
                         Operator(protected, fresh("user"), fresh("tenant"), "ADMIN")):
            theirs = await stats(stranger)
            assert (theirs["agents"], theirs["topology"]["nodes"], theirs["topology"]["edges"]) == (0, 0, 0)
            assert await seen(stranger) == 0
        whole = (await stats(stranger))["server"]  # the ADMIN's, apart
        assert whole["agents"] == 2 and whole["topology"]["nodes"] > ours["topology"]["nodes"]


async def test_a_process_whose_pid_was_taken_again_has_no_history_of_the_one_before(server: ServerProcess) -> None:
    """A process node's id is its host and pid: a process that took the pid of
    one that ended showed that one's CPU (a burst before it existed) as its own."""
    now = time.time()
    probe = fresh("pidprobe")

    def report(at: float, started: float, cpu: float) -> dict[str, Any]:
        document = _report(probe)
        document["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
        first = document["processes_info"]["processes"][0]
        first["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
        first["cpu_percent"] = cpu
        return document

    async with httpx.AsyncClient() as client:
        for step in range(4):  # the first process: busy for a minute
            at = now - 120 + step * 15
            answer = await client.post(f"{server.base_url}/api/v1/reports", json=report(at, now - 300, 99.0))
            assert answer.status_code == 202, answer.text
        again = now - 30  # the pid taken again
        assert (await client.post(f"{server.base_url}/api/v1/reports", json=report(now, again, 0.5))).status_code == 202
        pid = _report(probe)["processes_info"]["processes"][0]["pid"]

        async def later_process() -> dict[str, Any] | None:
            details = await _details(client, server, f"process:{probe}:{pid}")
            started = details["node"]["metadata"].get("started_at")
            return details if started == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(again)) else None

        details = await eventually(later_process)
    points = details["metrics_history"]["points"]
    assert points and all(p.get("cpu_percent") != 99.0 for p in points), points


async def test_an_embedded_servers_history_says_when_it_began(server: ServerProcess) -> None:
    """The history is this process's memory without a report bus: a node's
    details say since when (the UI says no history is known before it, rather
    than draw a gap as if the node had been away); a replica on a bus, whose
    history is rebuilt from the stream, says nothing (tests/replicas)."""
    assert server.proc is not None
    started = psutil.Process(server.proc.pid).create_time()
    probe = fresh("probe")
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{server.base_url}/api/v1/reports", json=_report(probe))
        assert response.status_code == 202, response.text
        history = (await _details(client, server, f"host:{probe}"))["metrics_history"]
    since = datetime.fromisoformat(history["since"].replace("Z", "+00:00")).timestamp()
    assert started - 1 <= since <= time.time()
