"""Server memory per agent, against its memory budget (``agents.memory_budget``).

    .venv/bin/python bench/agent_memory.py [--agents 200] [--budget-mib 4] [--before DIR]
                                           [--skip-server] [--skip-calibration]

1. Calibration, in-process (tracemalloc, every metric ring full as after an
   hour of reports): for report shapes an agent may send (many processes;
   containers in pods; many labels; listening sockets on many addresses;
   client connections to distinct far ends, unresolved or each a distinct edge
   in four views; command lines of random or non-ASCII text; a realistic host),
   sized so that their estimate fills the budget, the memory each agent's
   report holds (nodes, indexes, edges, history, cached JSON, the packed latest
   report, the newest snapshot and diff) against the estimate
   (``MemoryBudget.footprint``): the ratio must stay below 1 for every shape.
2. Real servers, a fresh `trioscope serve` per figure: RSS gained per agent
   for ``--agents`` realistic hosts (300 processes, 2,000 connections to peers,
   20 containers), for 40 agents at the budget (three shapes), and for 10
   anonymous 20,000-process reports (the attack: ~40 MiB each before), each
   agent sending three reports (the next replaces the last, as in steady
   state). Baseline in the same run: the budget off (1 GiB), and with
   ``--before DIR`` the code of another tree (e.g. before this change). RSS
   includes the heap's high-water mark from decoding and merging reports in
   batches; rings on the server start small (calibration counts them full).
"""

from __future__ import annotations

import argparse
import base64
import gc
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import psutil
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from servers import free_port, stop, trioscope  # noqa: E402
from tests.synthetic import container_hex, host_ip, host_report, iso  # noqa: E402

from trioscope.actors.topology import PROCESS_HISTORY  # noqa: E402
from trioscope.domain.agents import AgentState, PackedReport  # noqa: E402
from trioscope.domain.timeseries import MetricHistory  # noqa: E402
from trioscope.domain.topology import NodeKind, TopologyGraph, build_partition  # noqa: E402
from trioscope.wire import decode_report  # noqa: E402

if TYPE_CHECKING:
    from trioscope.wire import MemoryBudget

HOUR = 3600.0
NOW = 1_800_000_000.0
Shape = Callable[[int, int], dict[str, Any]]
"""(agent number, size) -> report document."""


def bare(i: int) -> dict[str, Any]:
    d = host_report(i + 1, timestamp=NOW, containers=0, processes=0, connections=0)
    d["network_info"]["connections"] = []
    return d


def processes(i: int, n: int) -> dict[str, Any]:
    return host_report(i + 1, timestamp=NOW, containers=0, processes=n, connections=0)


def pods(i: int, n: int) -> dict[str, Any]:
    d = bare(i)
    d["docker_info"]["containers"] = [{
        "id": container_hex(f"pod-{i}", k), "name": f"/c{k}", "image": "registry.local/app:1",
        "labels": {"io.kubernetes.pod.name": f"p{i}-{k}", "io.kubernetes.pod.namespace": "ns", "app": f"s{i}-{k}"},
        "stats": {"cpu_percent": 1.0, "memory_usage_mb": 10.0}} for k in range(n)]
    return d


def labels(i: int, n: int) -> dict[str, Any]:
    d = bare(i)
    d["docker_info"]["containers"] = [{"id": container_hex(f"lab-{i}", k), "labels": {f"l{j}": f"v{j}" for j in range(512)}}
                                      for k in range(n)]
    return d


def listeners(i: int, n: int) -> dict[str, Any]:
    d = processes(i, 100)
    d["host_info"]["ip_addresses"] = [f"10.{i}.{k}.1" for k in range(16)]
    d["network_info"]["connections"] = [{"protocol": "tcp", "local_address": "0.0.0.0", "local_port": 1 + k,
                                         "state": "LISTEN", "pid": 1000 + k % 100} for k in range(n)]
    return d


def distinct(i: int, n: int) -> dict[str, Any]:
    d = processes(i, 300)
    d["network_info"]["connections"] = [{
        "protocol": "tcp", "local_address": host_ip(i + 1), "local_port": 1024 + k % 60000,
        "remote_address": f"192.168.{k // 250 % 250}.{k % 250 + 1}", "remote_port": 1 + k // 62500,
        "state": "ESTABLISHED", "pid": 1000 + k % 300} for k in range(n)]
    return d


def edge_target(i: int, n: int) -> dict[str, Any]:
    """Agent i+1: n processes, each in a container of its own pod and service,
    listening on its container's address."""
    d = bare(i)
    d["docker_info"]["containers"] = [{
        "id": container_hex(f"edge-{i}", k), "name": f"/t{k}",
        "labels": {"io.kubernetes.pod.name": f"t{i}-{k}", "io.kubernetes.pod.namespace": "ns", "app": f"t{i}-{k}"},
        "networks": [{"name": "pods", "ip_address": f"172.{20 + i}.{k // 250}.{k % 250 + 1}"}]} for k in range(n)]
    d["processes_info"]["processes"] = [{"pid": 100 + k, "container_id": container_hex(f"edge-{i}", k)} for k in range(n)]
    d["network_info"]["connections"] = [{"protocol": "tcp", "local_address": "0.0.0.0", "local_port": 80,
                                         "state": "LISTEN", "pid": 100 + k} for k in range(n)]
    return d


def edges(i: int, n: int) -> dict[str, Any]:
    """One process in a pod, connected to n distinct processes of edge_target(i+100):
    every connection a distinct edge in the processes, containers, pods and services views."""
    d = bare(i)
    cid = container_hex(f"src-{i}", 0)
    d["docker_info"]["containers"] = [{"id": cid, "name": "/src", "labels": {
        "io.kubernetes.pod.name": f"src{i}", "io.kubernetes.pod.namespace": "ns", "app": f"src{i}"}}]
    d["processes_info"]["processes"] = [{"pid": 7, "container_id": cid}]
    target = 100 + i
    d["network_info"]["connections"] = [{
        "protocol": "tcp", "local_address": host_ip(i + 1), "local_port": 1024 + k % 60000,
        "remote_address": f"172.{20 + target}.{k // 250}.{k % 250 + 1}", "remote_port": 80,
        "state": "ESTABLISHED", "pid": 7} for k in range(n)]
    return d


def random_text(i: int, n: int) -> dict[str, Any]:
    d = processes(i, n)
    for p in d["processes_info"]["processes"]:
        p["cmdline"] = base64.b64encode(os.urandom(1500)).decode()
    return d


def wide_text(i: int, n: int) -> dict[str, Any]:
    d = processes(i, n)
    for k, p in enumerate(d["processes_info"]["processes"]):
        p["cmdline"] = f"/usr/bin/worker --id={k} " + "x" * 1000 + "\U0001F600"
    return d


def realistic(i: int, n: int = 300) -> dict[str, Any]:
    return host_report(i + 1, timestamp=NOW, containers=20, processes=n, connections=2000, peers=[i + 2, i + 3])


SHAPES: dict[str, Shape] = {
    "processes": processes, "containers in pods": pods, "512 labels each": labels,
    "listening x16 addresses": listeners, "distinct far ends": distinct, "distinct edges x4 views": edges,
    "random command lines": random_text, "non-ASCII command lines": wide_text, "realistic host": realistic,
}


def estimate(budget: MemoryBudget, document: dict[str, Any]) -> int:
    body = orjson.dumps(document)
    return budget.footprint(decode_report(orjson.loads(body)), len(body)).bytes


def at_budget(budget: MemoryBudget, shape: Shape) -> int:
    """The size of ``shape`` whose estimate comes closest under the budget."""
    low, high = 1, 1
    while estimate(budget, shape(0, high)) <= budget.limit:
        low, high = high, high * 2
    while high - low > max(1, low // 100):
        middle = (low + high) // 2
        low, high = (middle, high) if estimate(budget, shape(0, middle)) <= budget.limit else (low, middle)
    return low


def retained(documents: list[dict[str, Any]], context: list[dict[str, Any]] = (), *,
             history_seconds: float = HOUR, process_seconds: float = PROCESS_HISTORY) -> float:
    """Bytes per report of ``documents`` held once merged, rings full.
    ``context``: reports merged first and not counted (the far ends of edges).
    Uses only what older trees have too (``--before``)."""
    graph = TopologyGraph(NOW)
    history, process_history = MetricHistory(history_seconds), MetricHistory(process_seconds)
    for document in context:
        graph.apply(decode_report(document), NOW)
    graph.publish(NOW)
    for node in graph.nodes.values():
        node.entry()
    bodies = [orjson.dumps(d) for d in documents]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    keep: list[Any] = [None, None]
    for body in bodies:
        report = decode_report(orjson.loads(body))
        state = AgentState(report.agent_id, NOW, history_seconds)
        for bucket in range(int(history_seconds // 15)):
            state.receive(report, PackedReport.pack(body), NOW - history_seconds + 15 * bucket + 1)
        partition = build_partition(report, NOW)
        graph.apply(report, NOW, partition)
        for bucket in range(int(history_seconds // 15)):
            at = NOW - history_seconds + 15 * bucket + 1
            for node_id, node in partition.nodes.items():
                if not node.metrics:
                    continue
                if node.kind is NodeKind.PROCESS:
                    if at > NOW - process_seconds:
                        process_history.record(node_id, at, node.metrics)
                else:
                    history.record(node_id, at, node.metrics)
            for group in (*partition.pods, *partition.services):
                if group in graph.nodes:
                    history.record(group, at, graph.nodes[group].metrics)
        # The server keeps the newest snapshot and diff (the hub's), not every one.
        keep[:] = [*keep[:-2], state, *graph.publish(NOW)]
        for node in graph.nodes.values():
            node.entry()
        del report, partition
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used / len(documents)


def held(sizes: dict[str, int]) -> dict[str, float]:
    """Bytes each shape's report holds per agent at ``sizes`` (two agents each)."""
    retained([realistic(50)])  # first use: the interpreter's own caches, not the report's
    figures = {}
    for name, size in sizes.items():
        shape = SHAPES[name]
        context = [edge_target(100 + i, size) for i in range(2)] if shape is edges else []
        figures[name] = retained([shape(i, size) for i in range(2)], context)
    return figures


def held_before(source: str, sizes: dict[str, int]) -> dict[str, float]:
    """``held(sizes)`` with the ``trioscope`` package in ``source``, in a process of its own."""
    result = subprocess.run([sys.executable, __file__, "--held", json.dumps(sizes)], capture_output=True, text=True,
                            check=True, env={**os.environ, "PYTHONPATH": source})
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def calibrate(budget: MemoryBudget, before: str | None) -> None:
    print(f"calibration (in-process, tracemalloc, rings full), budget {budget.limit / 2**20:.1f} MiB:")
    # The realistic host as it is; the others sized to fill the budget.
    sizes = {name: 300 if shape is realistic else at_budget(budget, shape) for name, shape in SHAPES.items()}
    figures = held(sizes)
    old = held_before(before, sizes) if before is not None else {}
    worst = 0.0
    for name, size in sizes.items():
        guess = estimate(budget, SHAPES[name](0, size))
        worst = max(worst, figures[name] / guess)
        line = (f"  {name:26s} size {size:5d}: holds {figures[name] / 2**20:5.2f} MiB, estimate {guess / 2**20:5.2f} "
                f"MiB, ratio {figures[name] / guess:.2f}")
        if name in old:
            line += f" | before {old[name] / 2**20:5.2f} MiB, after/before {figures[name] / old[name]:.2f}x"
        print(line)
    print(f"  worst ratio held/estimate: {worst:.2f} (must be below 1)")


# ---- the real server -------------------------------------------------------------------------


async def post_all(base: str, documents: list[bytes], rounds: int = 3) -> dict[int, int]:
    """Each document ``rounds`` times (the next replaces the last), 4 at a time, gzip."""
    statuses: dict[int, int] = {}
    limiter = trio.CapacityLimiter(4)
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        async def post(body: bytes) -> None:
            async with limiter:
                for _attempt in range(20):
                    response = await client.post("/api/v1/reports", content=gzip.compress(body, 1),
                                                 headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
                    if response.status_code != 503:
                        break
                    await trio.sleep(0.5)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        for round_ in range(rounds):
            async with trio.open_nursery() as nursery:
                for body in documents:
                    nursery.start_soon(post, body.replace(b"@WHEN@", iso(time.time() - 10 + round_).encode()))
        await client.get("/api/v1/query/stats")  # merges what is pending
    return statuses


def stamped(document: dict[str, Any]) -> bytes:
    document["timestamp"] = "@WHEN@"
    return orjson.dumps(document)


async def rss_per_agent(flags: list[str], documents: list[bytes], source: str | None) -> tuple[float, float, dict[int, int]]:
    """MiB of RSS per agent a fresh server gains from ``documents`` (one per
    agent): overall, and for the second half of the agents alone (once the
    first half has raised the heap's high-water mark of decoding and merging,
    which does not grow with the number of agents: the per-agent slope).
    ``source``: a directory holding another ``trioscope`` package to run."""
    port = free_port()
    saved = os.environ.get("PYTHONPATH")
    if source is not None:
        os.environ["PYTHONPATH"] = source  # ahead of the editable install of this tree
    try:
        with tempfile.TemporaryDirectory(prefix="trioscope-bench-") as data:
            server = trioscope(port, "--data-dir", data, *flags)
    finally:
        if source is not None:
            os.environ.pop("PYTHONPATH") if saved is None else os.environ.update(PYTHONPATH=saved)
    try:
        process = psutil.Process(server.pid)
        base = f"http://127.0.0.1:{port}"
        await post_all(base, [stamped(bare(9999))], rounds=1)
        start = process.memory_info().rss
        half = len(documents) // 2
        statuses = await post_all(base, documents[:half])
        middle = process.memory_info().rss
        for status, count in (await post_all(base, documents[half:])).items():
            statuses[status] = statuses.get(status, 0) + count
        end = process.memory_info().rss
        return ((end - start) / len(documents) / 2**20, (end - middle) / (len(documents) - half) / 2**20, statuses)
    finally:
        stop(server)


async def server_bench(agents: int, budget: MemoryBudget, before: str | None) -> None:
    flag = f"{budget.limit // 1024}KiB"
    print(f"server RSS per agent (a fresh trioscope serve per line, 3 reports per agent, 4 at a time):")
    sized = {name: at_budget(budget, SHAPES[name]) for name in ("processes", "distinct far ends", "random command lines")}
    phases = {
        f"{agents} realistic hosts (300 processes, 2,000 connections, 20 containers)":
            [stamped(realistic(i)) for i in range(agents)],
        f"40 agents at the budget ({', '.join(f'{n} {s}' for n, s in sized.items())})":
            [stamped(SHAPES[name](2000 + 20 * k + i, size)) for i in range(20)
             for k, (name, size) in enumerate(sized.items())][:40],
        "10 anonymous 20,000-process reports (the attack)":
            [stamped(host_report(5000 + i, timestamp=NOW, containers=10, processes=20_000, connections=200,
                                 peers=[1], agent_prefix="anon")) for i in range(10)],
    }
    configurations = [("budget off (1GiB)", ["--agent-memory-budget", "1GiB"], None),
                      (f"budget {flag}", ["--agent-memory-budget", flag], None)]
    if before is not None:
        configurations.insert(0, ("before (no budget)", [], before))
    for phase, documents in phases.items():
        print(f"  {phase}:")
        figures = []
        for name, flags, source in configurations:
            overall, slope, statuses = await rss_per_agent(flags, documents, source)
            figures.append((overall, slope))
            print(f"    {name:20s} {overall:7.2f} MiB per agent overall, {slope:6.2f} MiB per agent of the "
                  f"second half  {statuses}")
        baseline = configurations[0][0].split(" (")[0]
        print(f"    ratio budget/{baseline}: overall {figures[-1][0] / figures[0][0]:.2f}x, "
              f"second half {figures[-1][1] / max(figures[0][1], 1e-9):.2f}x")


def main() -> None:
    if sys.argv[1:2] == ["--held"]:  # the --before tree's figures, for the parent run
        print(json.dumps(held(json.loads(sys.argv[2]))))
        return
    from trioscope.wire import MemoryBudget

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--budget-mib", type=float, default=4.0, help="agents.memory_budget, MiB")
    parser.add_argument("--before", metavar="DIR", help="also measure DIR/trioscope (an older tree, e.g. "
                        "`git archive 5e1fac7 src | tar -x --transform s/^src/trioscope/ -C DIR`)")
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--skip-calibration", action="store_true")
    args = parser.parse_args()
    limit = int(args.budget_mib * 2**20)
    budget = MemoryBudget(limit=limit, history=HOUR, process_history=min(HOUR, PROCESS_HISTORY))
    if not args.skip_calibration:
        calibrate(budget, args.before)
    if not args.skip_server:
        trio.run(server_bench, args.agents, budget, args.before)


if __name__ == "__main__":
    main()
