"""Places and host series under churn, against a real server at a small
``--max-agents``: an enrolled agent making up probe ids holds one place, not
every place; and wave after wave of new hosts keep getting their host metrics'
series in the Metrics API (``trioscope_node_*``)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.integration.test_commands import Operator, enroll, fresh
from tests.replicas.conftest import two_replicas
from tests.replicas.test_report_bus import bus_args, ready
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually


def _report(probe: str) -> dict[str, Any]:
    """Agent ``probe``'s report (its agent id is ``probe`` itself)."""
    document = host_report(0, timestamp=time.time(), containers=0, processes=1, connections=0)
    document["agent_id"] = probe
    return document


def _client(server: ServerProcess, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, timeout=30,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


async def _listed(client: httpx.AsyncClient) -> set[str]:
    return {row["agent_id"] for row in (await client.get("/api/v1/agents/list")).json()["agents"]}


async def test_an_enrolled_agent_making_up_probe_ids_holds_one_place() -> None:
    """Each probe id an enrolled agent signs supersedes the one it signed
    before: it takes that one's place, and new unenrolled probes take the
    others'. Every made-up id used to stay enrolled: they pushed the
    unenrolled probes out and held every place, and new ones got 503."""
    with ServerProcess(["--max-agents", "6", "--stale-node-threshold", "5m", "--rate-per-agent", "100000"]) as server:
        async with _client(server, "127.0.0.2") as site, _client(server, "127.0.0.3") as rogue:
            plain = [fresh("plain") for _ in range(3)]
            for probe in plain:
                assert (await site.post("/api/v1/reports", json=_report(probe))).status_code == 202
            agent = await enroll(rogue, server, Operator(server, fresh("user"), fresh("tenant")))
            made_up = [fresh("made-up") for _ in range(12)]
            for probe in made_up:
                assert (await agent.signed_post(rogue, "/api/v1/reports", _report(probe))).status_code == 202
            listed = await _listed(site)
            assert set(plain) | {made_up[-1]} <= listed and len(listed) == 6
            # The places of the ids superseded, from the address of the unenrolled probes too.
            late = [fresh("late") for _ in range(3)]
            statuses = [(await site.post("/api/v1/reports", json=_report(probe))).status_code for probe in late]
            assert statuses == [202, 202, 503]  # then 127.0.0.2 holds the most: none of its own goes
            assert await _listed(site) == {*plain, made_up[-1], *late[:2]}


async def test_a_replica_reading_made_up_probe_ids_from_the_stream_keeps_room_for_unenrolled_probes(
        request: pytest.FixtureRequest, postgres_url: str, nats_url: str, stream: str) -> None:
    """B cannot name the agent that signed the reports A published: of those
    probes it counts as enrolled no more than there are enrolled agents, and
    a new signed probe takes the place of one beyond that before an
    unenrolled probe's. B used to keep every made-up id enrolled: the
    unenrolled probe lost its place there, and a newcomer posting to B got 503."""
    flags = (*bus_args(nats_url, stream), "--max-agents", "5", "--stale-node-threshold", "5m",
             "--rate-per-agent", "100000")
    with two_replicas(request, postgres_url, *flags) as (a, b):
        async with _client(a, "127.0.0.2") as site, _client(a, "127.0.0.3") as rogue, \
                _client(b, "127.0.0.4") as office, httpx.AsyncClient(timeout=30) as plain_client:
            await eventually(lambda: ready(plain_client, a))
            await eventually(lambda: ready(plain_client, b))
            plain = fresh("plain")
            assert (await site.post("/api/v1/reports", json=_report(plain))).status_code == 202
            agent = await enroll(rogue, a, Operator(a, fresh("user"), fresh("tenant")))
            made_up = [fresh("made-up") for _ in range(8)]
            for probe in made_up:
                assert (await agent.signed_post(rogue, "/api/v1/reports", _report(probe))).status_code == 202

            async def b_read_them() -> bool:
                return made_up[-1] in await _listed(office)

            await eventually(b_read_them)
            assert plain in await _listed(office) and plain in await _listed(site)
            newcomer = fresh("office")
            assert (await office.post("/api/v1/reports", json=_report(newcomer))).status_code == 202

            async def both_list_it() -> bool:
                return newcomer in await _listed(site) and newcomer in await _listed(office)

            await eventually(both_list_it)
            assert {plain, made_up[-1]} <= await _listed(site) & await _listed(office)


async def test_wave_after_wave_of_new_hosts_keep_getting_host_series() -> None:
    """The host series are kept for at most ``--max-agents`` probes: those of
    the probes forgotten to make room go with them. They used to stay until
    ``--max-data-age``, and new waves of hosts got fewer series, then none."""
    hosts = 4
    with ServerProcess(["--max-agents", str(hosts), "--stale-node-threshold", "1s", "--max-data-age", "10m",
                        "--show-unassigned-agents", "true"]) as server:
        reader = {"Authorization": f"Bearer {server.user_token('reader', 'team', 'VIEWER')}"}
        async with _client(server, "127.0.0.2") as client:
            async def series(wave: str) -> int:
                answer = await client.get("/api/v1/metrics/query", headers=reader, params={
                    "query": f'trioscope_node_cpu_usage{{agent_id=~"{wave}-.*"}}', "time": str(time.time())})
                assert answer.status_code == 200, answer.text
                return len(answer.json()["data"]["result"])

            for wave in (fresh("wave") for _ in range(3)):
                for i in range(hosts):
                    async def accepted(probe: str = f"{wave}-{i}") -> bool:
                        # Once the previous wave is stale (1 s), each new host takes one of its places.
                        return (await client.post("/api/v1/reports", json=_report(probe))).status_code == 202

                    await eventually(accepted)

                async def all_kept(wave: str = wave) -> bool:
                    return await series(wave) == hosts

                await eventually(all_kept)
            # The series of the probes forgotten for the later waves are counted in /metrics.
            exposition = (await client.get("/metrics")).text
            forgotten = [line for line in exposition.splitlines() if line.startswith("app_node_series_forgotten_total ")]
            assert forgotten and float(forgotten[0].split()[-1]) >= 2 * hosts, forgotten
            assert "app_node_metrics_refused_total" in exposition
