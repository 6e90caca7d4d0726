"""The memory budget per agent against a real server: reports over it are
refused before any actor holds them (413 ``memory_budget_exceeded``), so
anonymous agents cannot fill the server's memory faster than the budget says;
the probe fits its report to the budget the server states."""

from __future__ import annotations

import gzip
import time
from typing import Any

import httpx
import orjson
import psutil

from tests.integration.test_probe import probe
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually


DEFAULT_BUDGET = 4 * 1024**2
"""``agents.memory_budget`` by default: the README's figure per agent."""


def post(http: httpx.Client, document: dict[str, Any]) -> httpx.Response:
    return http.post("/api/v1/reports", content=gzip.compress(orjson.dumps(document), 1),
                     headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})


def test_anonymous_reports_of_20000_processes_leave_server_memory_within_the_budget() -> None:
    """The attack: one ~350 KiB gzip report of 20,000 processes per new agent id
    took ~40 MiB of server memory each. Ten of them may now add at most ten
    agents' budgets (the README's figure), and with the default budget they
    are refused."""
    with ServerProcess() as server, httpx.Client(base_url=server.base_url, timeout=120) as http:
        now = time.time()
        assert post(http, host_report(1, timestamp=now, peers=[2], agent_prefix="warm")).status_code == 202
        big = [host_report(1000 + i, timestamp=now, containers=10, processes=20_000, connections=200, peers=[1],
                           agent_prefix="anon") for i in range(11)]
        post(http, big.pop())  # the first large body sets the heap's high-water mark: not the agents' memory
        http.get("/api/v1/query/stats")
        server_process = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
        before = server_process.memory_info().rss
        statuses = [post(http, document).status_code for document in big]
        stats = http.get("/api/v1/query/stats").json()  # merges whatever was accepted
        # What the server holds, not what its allocator still caches of the refused
        # bodies: under jemalloc (server.allocator) the first body's pages went back
        # to the system meanwhile and the others took new ones, given back within
        # its decay time (5 s) once they are garbage. Held memory never goes down.
        deadline = time.monotonic() + 30
        while (grown := server_process.memory_info().rss - before) > 10 * DEFAULT_BUDGET:
            assert time.monotonic() < deadline, f"RSS grew {grown / 2**20:.0f} MiB for 10 agents ({statuses})"
            time.sleep(0.2)
        assert statuses == [413] * 10
        assert http.get("/api/v1/agents/config/warm-1").json()["memory_budget_bytes"] == DEFAULT_BUDGET
        assert stats["topology"]["agents"] == 1
        assert stats["agents"] == 1


def test_a_report_over_the_budget_gets_413_naming_the_budget_and_its_parts() -> None:
    with ServerProcess(["--agent-memory-budget", "256KiB"]) as server, \
            httpx.Client(base_url=server.base_url, timeout=30) as http:
        document = host_report(1, timestamp=time.time(), containers=4, processes=200, connections=50, peers=[2],
                               agent_prefix="heavy")
        response = http.post("/api/v1/reports", json=document)
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["code"] == "memory_budget_exceeded"
        assert "agents.memory_budget" in error["message"] and "an agent may take 256 KiB" in error["message"]
        details = error["details"]
        assert details["key"] == "agents.memory_budget" and details["limit_bytes"] == 256 * 1024
        assert details["estimate_bytes"] > details["limit_bytes"]
        assert details["nodes"] == 1 + 4 + 200 + 2 + 2  # host, containers, processes, pods, services
        assert {"endpoints", "outgoing", "views", "items", "text"} <= details.keys()
        # Refused before any actor held it: the agent is not known.
        assert http.get("/api/v1/agents/config/heavy-1").status_code == 404

        document["processes_info"]["processes"] = document["processes_info"]["processes"][:20]
        document["network_info"]["connections"] = []
        assert http.post("/api/v1/reports", json=document).status_code == 202
        config = http.get("/api/v1/agents/config/heavy-1").json()
        assert config["memory_budget_bytes"] == 256 * 1024
        assert config["metric_history_seconds"] == 3600 and config["process_metric_history_seconds"] == 900


async def test_a_probe_fits_its_report_to_the_memory_budget_the_server_states() -> None:
    # 96 KiB leaves room for the host and a few of this host's processes.
    with ServerProcess(["--agent-memory-budget", "96KiB"]) as server, probe(server.base_url, "probe-lean") as process:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            async def reported() -> dict[str, Any] | None:
                agents = (await client.get("/api/v1/agents/list")).json()["agents"]
                return next((a for a in agents if a["agent_id"] == "probe-lean" and a["reports_received"] >= 2), None)

            await eventually(reported)
            latest = (await client.get("/api/v1/query/agents/probe-lean/latest")).json()["report"]
        assert 0 < len(latest["processes_info"]["processes"]) < len(psutil.pids())
        log = process.read_log()  # type: ignore[attr-defined]
        assert "the server takes up to 98304 bytes of memory per agent" in log and "left out" in log, log
        assert "report refused" not in log, log
