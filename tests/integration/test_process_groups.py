"""The processes-by-name view with a real server: over HTTP and over the live
WebSocket, kept current by diffs, and what it holds is the processes view
grouped by host and name."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest
from trio_websocket import open_websocket_url

from tests.integration.test_live import apply, next_message, topology, ws_url
from tests.server_process import ServerProcess
from tests.synthetic import host_report

T0 = time.time()
HOSTS = (1, 2, 3)
KERNEL_THREADS = [{"pid": 2, "ppid": 0, "name": "kthreadd", "user": "root", "status": "sleeping"},
                  {"pid": 9, "ppid": 2, "name": "kworker/0:1", "user": "root", "status": "idle"}]


@pytest.fixture
def server():
    with ServerProcess(["--ws-ping-interval", "60s"]) as process:
        yield process


async def post_hosts(server: ServerProcess, t: float, processes: int) -> None:
    """Hosts 1-3, each with ``processes`` processes named worker-0 .. worker-12
    in turn and two kernel threads, connected to the other two."""
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        for host in HOSTS:
            body = host_report(host, timestamp=t, containers=2, processes=processes, connections=12,
                               peers=[h for h in HOSTS if h != host])
            body["processes_info"]["processes"] += KERNEL_THREADS
            response = await client.post("/api/v1/reports", json=body)
            assert response.status_code == 202, response.text


def grouped(processes: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], int]]:
    """The processes view's nodes and edges grouped by host and name here:
    group id -> {count, pids, cpu}, and (source group, target group) -> connections."""
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: {"pids": [], "cpu": 0.0})
    group_of = {}
    for node in processes["nodes"].values():
        if node["metadata"].get("kernel_thread"):
            continue
        group = f"process_group:{node['host'].removeprefix('host:')}:{node['metadata']['name']}"
        group_of[node["id"]] = group
        groups[group]["pids"].append(node["metadata"]["pid"])
        groups[group]["cpu"] += node["metrics"]["cpu_percent"]
    edges: Counter[tuple[str, str]] = Counter()
    for edge in processes["edges"].values():
        source, target = group_of.get(edge["source"]), group_of.get(edge["target"])
        if source and target and source != target:
            edges[(source, target)] += edge["connections"]
    return {g: {**v, "pids": sorted(v["pids"])} for g, v in groups.items()}, dict(edges)


def summed(view: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], int]]:
    """The processes-by-name view's nodes and edges in the shape of ``grouped``."""
    nodes = {i: {"pids": n["metadata"]["pids"], "cpu": n["metrics"]["cpu_percent"]} for i, n in view["nodes"].items()}
    return nodes, {(e["source"], e["target"]): e["connections"] for e in view["edges"].values()}


async def test_the_view_over_http_is_the_processes_view_grouped_without_kernel_threads(server):
    await post_hosts(server, T0, processes=26)
    processes, by_name = await topology(server, "processes"), await topology(server, "processes-by-name")
    assert by_name["view"] == "processes-by-name" and by_name["version"] == processes["version"]
    assert len(by_name["nodes"]) == 13 * len(HOSTS)
    assert all(n["type"] == "process_group" and n["metadata"]["pids"] and not n["metadata"]["name"].startswith("k")
               for n in by_name["nodes"].values())
    assert by_name["edges"] and summed(by_name) == grouped(processes)
    assert sum(n["metrics"]["processes"] for n in by_name["nodes"].values()) == 26 * len(HOSTS)
    everything = await topology(server)
    assert not [n for n in everything["nodes"].values() if n["type"] == "process_group"]


async def test_the_live_view_is_kept_current_by_diffs(server):
    await post_hosts(server, T0, processes=26)
    async with open_websocket_url(ws_url(server, "?view=processes-by-name")) as ws:
        state = (await next_message(ws, "topology_update"))["payload"]
        assert state["reset"] and state["view"] == "processes-by-name"
        assert state["nodes"] == (await topology(server, "processes-by-name"))["nodes"]
        version = state["version"]
        await post_hosts(server, T0 + 1, processes=14)  # worker-0 down to 2 processes, the others to 1
        await post_hosts(server, T0 + 2, processes=27)  # worker-0 up to 3
        expected = await topology(server, "processes-by-name")
        while version < expected["version"]:
            payload = (await next_message(ws, "topology_update"))["payload"]
            assert payload["view"] == "processes-by-name"
            if payload.get("reset"):
                state, version = payload, payload["version"]
                continue
            assert payload["previous_version"] == version
            assert all(i.startswith("process_group:") for part in ("add", "update") for i in payload[part]["nodes"])
            apply(state, payload)
            version = payload["version"]
        assert (state["nodes"], state["edges"]) == (expected["nodes"], expected["edges"])
        assert state["nodes"]["process_group:host-1:worker-0"]["metadata"]["pids"] == [1000, 1013, 1026]
        assert summed(state) == grouped(await topology(server, "processes"))


async def test_a_subscribe_switches_between_grouped_and_ungrouped_processes(server):
    await post_hosts(server, T0, processes=26)
    async with open_websocket_url(ws_url(server, "?view=processes-by-name")) as ws:
        grouped_reset = (await next_message(ws, "topology_update"))["payload"]
        assert len(grouped_reset["nodes"]) == 13 * len(HOSTS)
        await ws.send_message('{"type": "subscribe", "topics": ["topology"], "view": "processes"}')
        reset = (await next_message(ws, "topology_update"))["payload"]
        assert reset["reset"] and reset["view"] == "processes" and len(reset["nodes"]) == 28 * len(HOSTS)
