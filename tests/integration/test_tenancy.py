"""Tenants kept apart, against a real server: per-user rate limits per (tenant,
user); with ``--protect-reads`` each tenant sees the topology of the probes
enrolled in its deployments (and unassigned ones only if configured); audit
records of unauthenticated refusals land in no tenant's log and are read with
``trioscope audit``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.integration.test_commands import Operator, enroll, fresh
from tests.server_process import ServerProcess, run_cli
from tests.status_agent import StatusAgent
from tests.synthetic import host_report, iso
from tests.waiting import eventually
from trioscope.domain.topology import host_id, node_scope, process_id
from trioscope_probe._signing import signed_request


def _host(reader: Operator, index: int) -> str:
    """The id of host ``host-<index>`` as a probe enrolled in ``reader``'s tenant reports it."""
    return host_id(f"host-{index}", node_scope(reader.tenant))


def _report(index: int, probe: str) -> dict[str, Any]:
    report = host_report(index, timestamp=time.time(), containers=1, processes=2, connections=0, agent_prefix=probe)
    return report


async def _tenant(server: ServerProcess, client: httpx.AsyncClient) -> tuple[Operator, StatusAgent]:
    operator = Operator(server, fresh("user"), fresh("tenant"), "VIEWER")
    owner = Operator(server, operator.user_id, operator.tenant, "OPERATOR")
    return operator, await enroll(client, server, owner)


pytestmark = pytest.mark.usefixtures("database")  # every test on each store backend (integration/conftest.py)


@pytest.fixture(scope="module")
def protected(database: str) -> Iterator[ServerProcess]:
    with ServerProcess(["--protect-reads", "true"]) as process:
        yield process


async def test_each_tenant_sees_the_probes_of_its_own_deployments(protected: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=protected.base_url) as client:
        (alice, agent_a), (bob, agent_b) = await _tenant(protected, client), await _tenant(protected, client)
        probe_a, probe_b, loose = fresh("pa"), fresh("pb"), fresh("loose")
        assert (await agent_a.signed_post(client, "/api/v1/reports", _report(1, probe_a))).status_code == 202
        assert (await agent_b.signed_post(client, "/api/v1/reports", _report(2, probe_b))).status_code == 202
        assert (await client.post("/api/v1/reports", json=_report(3, loose))).status_code == 202

        async def hosts(reader: Operator) -> set[str]:
            answer = await client.get("/api/v1/query/topology?view=hosts", headers=reader.auth)
            assert answer.status_code == 200, answer.text
            return set(answer.json()["topology"]["nodes"])

        await eventually(lambda: _has(hosts(alice), _host(alice, 1)))
        assert await hosts(alice) == {_host(alice, 1)}
        assert await hosts(bob) == {_host(bob, 2)}
        everything = await client.get("/api/v1/query/topology", headers=alice.auth)
        assert {n["agent_id"] for n in everything.json()["topology"]["nodes"].values()} == {f"{probe_a}-1"}

        assert (await client.get(f"/api/v1/query/nodes/{_host(bob, 2)}", headers=alice.auth)).status_code == 404
        mine = await client.get(f"/api/v1/query/nodes/{_host(alice, 1)}", headers=alice.auth)
        assert mine.status_code == 200 and mine.json()["agents"] == [f"{probe_a}-1"]
        for path in (f"/api/v1/query/agents/{probe_b}-2/latest", f"/api/v1/query/agents/{probe_b}-2/timeseries",
                     f"/api/v1/agents/config/{probe_b}-2", f"/api/v1/agents/config/{loose}-3"):
            refused = await client.get(path, headers=alice.auth)
            assert (refused.status_code, refused.json()["error"]["code"]) == (404, "agent_not_found"), path
        assert (await client.get(f"/api/v1/agents/config/{probe_a}-1", headers=alice.auth)).status_code == 200
        listed = await client.get("/api/v1/agents/list", headers=bob.auth)
        assert [row["agent_id"] for row in listed.json()["agents"]] == [f"{probe_b}-2"]
        stats = (await client.get("/api/v1/query/stats", headers=bob.auth)).json()
        assert stats["agents"] == stats["topology"]["agents"] == 1  # not the server's three (other tenants')
        assert "server" not in stats
        # Nor what tells how much others report: series stored, actors (one per probe), the merge's counters.
        assert not {"storage", "runtime"} & set(stats) and "stream_sequence" not in stats["topology"]


async def test_agent_configuration_is_no_existence_oracle(protected: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=protected.base_url) as client:
        _, agent = await _tenant(protected, client)
        probe = fresh("probe")
        assert (await agent.signed_post(client, "/api/v1/reports", _report(4, probe))).status_code == 202
        known, unknown = f"/api/v1/agents/config/{probe}-4", f"/api/v1/agents/config/{fresh('nobody')}"
        for path in (known, unknown):  # the same answers, known or not
            anonymous = await client.get(path)
            assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "missing_token")
            stranger = await client.get(path, headers=Operator(protected, fresh("u"), fresh("t"), "ADMIN").auth)
            assert (stranger.status_code, stranger.json()["error"]["code"]) == (404, "agent_not_found")
        signed = await client.send(signed_request(client, "GET", known, agent_id=agent.agent_id, token=agent.token))
        assert signed.status_code == 200 and signed.json()["agent_id"] == f"{probe}-4"


async def test_two_tenants_hosts_of_one_name_stay_apart(protected: ServerProcess) -> None:
    """Both tenants have a host named ``host-5`` (and an unsigned probe says
    so too): each tenant's users see theirs, as their probe reports it, with
    its history alone; nothing of the other's or the unsigned probe's."""
    async with httpx.AsyncClient(base_url=protected.base_url) as client:
        (alice, agent_a), (bob, agent_b) = await _tenant(protected, client), await _tenant(protected, client)
        probe_a, probe_b, loose = fresh("sa"), fresh("sb"), fresh("sloose")
        report_a, report_b, forged = _report(5, probe_a), _report(5, probe_b), _report(5, loose)
        report_a["host_info"]["kernel_version"], report_b["host_info"]["kernel_version"] = "6.1-a", "5.4-b"
        forged["host_info"]["kernel_version"] = "0.0-forged"
        forged["processes_info"]["processes"].append({"pid": 4242, "name": "miner", "cpu_percent": 99.0})
        assert (await agent_a.signed_post(client, "/api/v1/reports", report_a)).status_code == 202
        assert (await agent_b.signed_post(client, "/api/v1/reports", report_b)).status_code == 202
        assert (await client.post("/api/v1/reports", json=forged)).status_code == 202

        async def details(reader: Operator) -> dict[str, Any] | None:
            answer = await client.get(f"/api/v1/query/nodes/{_host(reader, 5)}", headers=reader.auth)
            return answer.json() if answer.status_code == 200 else None

        for reader, probe, kernel in ((alice, probe_a, "6.1-a"), (bob, probe_b, "5.4-b")):
            found = await eventually(lambda reader=reader: details(reader))
            assert found["agents"] == [f"{probe}-5"], found["agents"]
            assert found["node"]["metadata"]["kernel_version"] == kernel
            processes = await client.get("/api/v1/query/topology?view=processes", headers=reader.auth)
            assert set(processes.json()["topology"]["nodes"]) == {
                process_id("host-5", p["pid"], node_scope(reader.tenant)) for p in report_a["processes_info"]["processes"]}
            answer = await client.get("/api/v1/query/topology", headers=reader.auth)
            text = answer.text
            assert "0.0-forged" not in text and "miner" not in text, text
        # Neither tenant's user reaches the other's host.
        refused = await client.get(f"/api/v1/query/nodes/{_host(bob, 5)}", headers=alice.auth)
        assert refused.status_code == 404


async def test_an_agent_id_freed_or_taken_over_gives_nobody_what_its_probe_reported() -> None:
    """Alice's probe reports as R; her agent is decommissioned (R is then no
    deployment's: shown to everyone with --show-unassigned-agents), and Bob's
    enrolled agent reports as R, dated before Alice's report. Nobody but
    Alice's tenant ever reads what her probe reported: not its nodes, its
    latest report, its listing; Bob's report replaces it at once."""
    with ServerProcess(["--protect-reads", "true", "--show-unassigned-agents", "true"]) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            (alice, agent_a), (bob, agent_b) = await _tenant(server, client), await _tenant(server, client)
            probe = fresh("freed")
            reporter = f"{probe}-7"
            report_a, report_b = _report(7, probe), _report(7, probe)
            report_a["host_info"]["kernel_version"], report_b["host_info"]["kernel_version"] = "6.1-alice", "5.4-bob"
            report_b["timestamp"] = iso(time.time() - 60)
            assert (await agent_a.signed_post(client, "/api/v1/reports", report_a)).status_code == 202

            async def hosts(reader: Operator) -> set[str]:
                answer = await client.get("/api/v1/query/topology?view=hosts", headers=reader.auth)
                return set(answer.json()["topology"]["nodes"])

            await eventually(lambda: _has(hosts(alice), _host(alice, 7)))
            admin = Operator(server, fresh("admin"), alice.tenant, "ADMIN")
            gone = await client.post(alice.url(agent_a.deployment_hash, f"/agents/{agent_a.agent_id}/decommission"),
                                     headers=admin.auth)
            assert gone.status_code == 200, gone.text

            async def nothing_of_alices(reader: Operator, reports_of_its_own: int) -> None:
                assert _host(alice, 7) not in await hosts(reader)
                details = await client.get(f"/api/v1/query/nodes/{_host(alice, 7)}", headers=reader.auth)
                assert details.status_code == 404, details.text
                latest = await client.get(f"/api/v1/query/agents/{reporter}/latest", headers=reader.auth)
                assert "6.1-alice" not in latest.text, latest.text
                listed = await client.get("/api/v1/agents/list", headers=reader.auth)
                rows = [row for row in listed.json()["agents"] if row["agent_id"] == reporter]
                # Listed only once the reader's own probe reported as R, and
                # then with its reports alone: none of Alice's counted.
                if reports_of_its_own == 0:
                    assert rows == [], rows
                else:
                    assert [row["reports_received"] for row in rows] == [reports_of_its_own], rows

            await nothing_of_alices(bob, reports_of_its_own=0)
            # Bob's probe takes the freed id with a report dated before Alice's.
            assert (await agent_b.signed_post(client, "/api/v1/reports", report_b)).status_code == 202
            await eventually(lambda: _has(hosts(bob), _host(bob, 7)))
            await nothing_of_alices(bob, reports_of_its_own=1)
            latest = await client.get(f"/api/v1/query/agents/{reporter}/latest", headers=bob.auth)
            assert latest.status_code == 200 and latest.json()["report"]["host_info"]["kernel_version"] == "5.4-bob"
            assert _host(alice, 7) not in await hosts(alice)  # hers went with it


async def _has(awaitable: Any, item: str) -> bool:
    return item in await awaitable


async def test_unassigned_probes_are_shown_only_if_configured() -> None:
    with ServerProcess(["--protect-reads", "true", "--show-unassigned-agents", "true"]) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            (alice, agent), (bob, _) = await _tenant(server, client), await _tenant(server, client)
            assert (await agent.signed_post(client, "/api/v1/reports", _report(1, "mine"))).status_code == 202
            assert (await client.post("/api/v1/reports", json=_report(2, "loose"))).status_code == 202

            async def hosts(reader: Operator) -> set[str]:
                answer = await client.get("/api/v1/query/topology?view=hosts", headers=reader.auth)
                return set(answer.json()["topology"]["nodes"])

            await eventually(lambda: _has(hosts(alice), "host:host-2"))
            assert await hosts(alice) == {_host(alice, 1), "host:host-2"}
            assert await hosts(bob) == {"host:host-2"}


async def test_rate_limits_per_user_are_per_tenant() -> None:
    with ServerProcess(["--rate-per-user", "60"]) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            here, there = Operator(server, "alice", fresh("tenant")), Operator(server, "alice", fresh("tenant"))
            for _ in range(40):
                if (await client.get("/api/v1/users/me", headers=there.auth)).status_code == 429:
                    break
            else:
                pytest.fail("no 429 for the busy alice")
            mine = await client.get("/api/v1/users/me", headers=here.auth)
            assert mine.status_code == 200, mine.text


async def test_unauthenticated_refusals_land_in_no_tenants_log() -> None:
    with ServerProcess() as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            operator = Operator(server, fresh("user"), fresh("tenant"))
            agent = await enroll(client, server, operator)
            forged = StatusAgent(server.base_url, agent.agent_id, "not-the-token", agent.deployment_hash)
            refused = await forged.wait(client, timeout=1)
            assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_token")
            tampered = await agent.wait(client, timeout=1, **{"X-Agent-Signature": "A" * 44})
            assert (tampered.status_code, tampered.json()["error"]["code"]) == (401, "invalid_signature")
            admin = Operator(server, fresh("admin"), operator.tenant, "ADMIN")

            async def failures() -> list[dict[str, Any]] | None:
                answer = await client.get("/api/v1/audit", params={"action": "auth.failure"}, headers=admin.auth)
                found = answer.json()["entries"]
                return found or None

            logged = await eventually(failures)
            # Only the request whose token proved who sent it is in the tenant's log.
            assert [(e["actor"], e["outcome"]) for e in logged] == [(f"agent:{agent.agent_id}", "invalid_signature")]

            def unattributed() -> list[dict[str, Any]]:
                done = run_cli(["audit", "--unattributed", "--json", "--data-dir", server.data_dir], env=server.env)
                assert done.returncode == 0, done.stderr
                return [json.loads(line) for line in done.stdout.splitlines()]

            async def anonymous() -> list[dict[str, Any]] | None:
                rows = [row for row in unattributed() if row["outcome"] == "invalid_token"]
                return rows or None

            [row] = await eventually(anonymous)
            assert (row["tenant"], row["actor"]) == (None, "anonymous")
            assert row["details"]["claimed_agent_id"] == agent.agent_id
            assert row["details"]["deployment_hash"] == agent.deployment_hash
            everything = run_cli(["audit", "--data-dir", server.data_dir], env=server.env)
            assert everything.returncode == 0 and "agent.register" in everything.stdout


async def test_each_tenants_live_view_holds_only_its_own_nodes(protected: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=protected.base_url) as client:
        (alice, agent_a), (_, agent_b) = await _tenant(protected, client), await _tenant(protected, client)
        probe_a, probe_b = fresh("la"), fresh("lb")
        token = alice.auth["Authorization"][7:]
        url = protected.base_url.replace("http://", "ws://") + "/api/v1/ws?view=hosts"
        async with open_websocket_url(url, subprotocols=["trioscope", f"bearer.{token}"]) as ws:
            first = await _topology_message(ws)
            assert first["reset"] and not first["nodes"]  # nothing of anyone else's
            # Bob's host talks to Alice's: neither Bob's node nor the edge to it reaches Alice.
            report_a = host_report(11, timestamp=time.time(), containers=1, processes=4, connections=3,
                                   agent_prefix=probe_a)
            report_b = host_report(12, timestamp=time.time(), containers=1, processes=4, connections=3,
                                   agent_prefix=probe_b, peers=[11])
            assert (await agent_b.signed_post(client, "/api/v1/reports", report_b)).status_code == 202
            assert (await agent_a.signed_post(client, "/api/v1/reports", report_a)).status_code == 202
            held: set[str] = set()
            with trio.fail_after(20):
                while _host(alice, 11) not in held:
                    update = await _topology_message(ws)
                    text = json.dumps(update)
                    assert "host-12" not in text, text
                    held |= set(update.get("nodes", {})) | set(update.get("add", {}).get("nodes", {}))
            await ws.send_message('{"type": "resync"}')
            with trio.fail_after(20):
                while not (reset := await _topology_message(ws)).get("reset"):
                    pass
            assert set(reset["nodes"]) == {_host(alice, 11)} and not reset["edges"]


async def _topology_message(ws: Any) -> dict[str, Any]:
    with trio.fail_after(20):
        while True:
            message = json.loads(await ws.get_message())
            if message["type"] == "topology_update":
                return message["payload"]  # type: ignore[no-any-return]


async def test_only_the_admin_tenants_admins_read_the_whole_servers_figures() -> None:
    """Any tenant's ADMIN read every tenant's series on /metrics (their agent
    ids, deployment hashes) and the actor tree named by every tenant's probe
    ids: with --admin-tenant, only that tenant's ADMINs do."""
    with ServerProcess(["--protect-reads", "true", "--admin-tenant", "ops"]) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            other = await enroll(client, server, Operator(server, fresh("user"), "beta"))
            await other.wait(client, timeout=1)  # heard from: its series are labelled with its tenant
            ops = {"Authorization": f"Bearer {server.user_token('root', 'ops', 'ADMIN')}"}
            acme = {"Authorization": f"Bearer {server.user_token('ann', 'acme', 'ADMIN')}"}

            async def labelled() -> bool:
                return 'tenant="beta"' in (await client.get("/metrics", headers=ops)).text
            await eventually(labelled)
            assert 'tenant="beta"' not in (await client.get("/metrics", headers=acme)).text
            for path in ("/api/v1/runtime", "/health/detailed"):
                refused = await client.get(path, headers=acme)
                assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden"), path
                assert "auth.admin_tenant" in refused.json()["error"]["message"]
                assert (await client.get(path, headers=ops)).status_code == 200, path


async def test_a_second_tenants_admin_administering_the_server_without_admin_tenant_is_warned_of_once() -> None:
    with ServerProcess([]) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            for tenant in ("acme", "acme", "beta", "gamma"):
                token = server.user_token(f"admin-of-{tenant}", tenant, "ADMIN")
                answer = await client.get("/api/v1/runtime", headers={"Authorization": f"Bearer {token}"})
                assert answer.status_code == 200  # as documented: every tenant's ADMIN, where it is empty

            async def warned() -> bool:
                return "'acme' and 'beta' each administer the whole server" in server.stderr()
            await eventually(warned)
            assert server.stderr().count("--admin-tenant") == 1 and "'gamma'" not in server.stderr()
