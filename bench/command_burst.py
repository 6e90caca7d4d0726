"""A burst of command creates while agents hold their long-polls, against a
burst of no-op POSTs to bench/noop_server.py, in the same run.

    .venv/bin/python bench/command_burst.py [--agents 400] [--creates 360]
        [--spread distinct,random,one] [--cycles 2] [--rounds 2] [--base REV] [--quick]

``--agents`` agents (one deployment each, enrolled as bench/commands.py does)
each hold a long-poll; once the server is idle, ``--creates`` connections,
opened beforehand, each send one create POST (an operator's token) at the
same moment; a create's latency runs from its request sent to its 202. Agents
that get a command report it and poll again, as the status agent does, so
the burst's deliveries are part of it. Where the creates go (``--spread``):

* ``distinct``: each to another agent's deployment;
* ``random``: each to a random agent's (seeded), so some deployments get several;
* ``one``: all to one deployment (its queue takes them one at a time).

Baseline: the same number of no-op POSTs (``/noop/create``) at the same
moment, to bench/noop_server.py holding as many no-op long polls (``/wait``).
``--base REV``: the same bursts on the code of that revision too (``git
archive`` of its ``src`` on PYTHONPATH). Each target gets a fresh server per
cycle and ``--rounds`` bursts on it; targets alternate within a cycle, so
they see the machine as it was within seconds. Printed: each burst's p50, p95
and max, then per target the medians, and their ratio to the baseline's.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from commands import Server, closed, enroll, fake_agents  # noqa: E402
from http_client import Http  # noqa: E402
from poll_holder import agent_headers, outcome, poll_target, report_body, wait_idle  # noqa: E402
from report_burst import source_of  # noqa: E402

BODY = b'{"type":"restart"}'
SPREADS = ("distinct", "random", "one")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def bursts(kind: str, spread: str, args: argparse.Namespace, pythonpath: str | None) -> list[dict[str, Any]]:
    """A fresh server of ``kind`` (``noop``, ``trioscope``): agents polling, ``--rounds`` bursts."""
    server = Server("baseline" if kind == "noop" else "trioscope", pythonpath=pythonpath)
    results: list[dict[str, Any]] = []
    try:
        data = fake_agents(args.agents) if kind == "noop" else await enroll(server.port, args.agents)
        agents = data["agents"]
        auth = [("Authorization", f"Bearer {data['user_token']}")]
        polling = delivered = 0
        limiter = trio.CapacityLimiter(50)

        async def agent_loop(agent: dict[str, str]) -> None:
            nonlocal polling, delivered
            async with limiter:
                http = await Http.connect("127.0.0.1", server.port)
            first = True
            async with http.stream:
                while True:
                    await http.send("GET", poll_target("noop" if kind == "noop" else "trioscope", agent, 120),
                                    agent_headers(agent, b""))
                    if first:
                        polling, first = polling + 1, False
                    status, body = await http.receive()
                    if status == 200:
                        delivered += 1
                        raw = report_body(agent, json.loads(body)["item"]["command_id"])
                        await http.request("POST", "/api/v1/agent/commands/report", agent_headers(agent, raw), raw)
                    elif status != 204:
                        await trio.sleep(1)

        async with trio.open_nursery() as nursery:
            for agent in agents:
                nursery.start_soon(agent_loop, agent)
            with trio.fail_after(300):
                while polling < len(agents):
                    await trio.sleep(0.1)
            for round_no in range(args.rounds):
                rng = random.Random(round_no)
                picks = [agents[i % len(agents)] if spread == "distinct" else rng.choice(agents) if spread == "random"
                         else agents[0] for i in range(args.creates)]
                before = delivered
                results.append(await one_burst(server, kind, data["user_id"], auth, picks))
                with trio.move_on_after(30):  # the burst's commands delivered and reported: at rest again
                    while kind != "noop" and delivered - before < args.creates:
                        await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    finally:
        closed(server)
    return results


async def one_burst(server: Server, kind: str, user_id: str, auth: list[tuple[str, str]],
                    picks: list[dict[str, str]]) -> dict[str, Any]:
    await wait_idle(server.pid, busy_below=0.1, window=0.5)
    connections = [await Http.connect("127.0.0.1", server.port) for _ in picks]
    await wait_idle(server.pid, busy_below=0.1, window=0.5)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    go = trio.Event()

    async def one(http: Http, agent: dict[str, str]) -> None:
        target = "/noop/create" if kind == "noop" else f"/api/v1/users/{user_id}/deployments/{agent['hash']}/commands"
        await go.wait()
        sent = time.perf_counter()
        status, body = await http.request("POST", target, auth, BODY)
        latencies.append(time.perf_counter() - sent)
        key = outcome(status, body)
        statuses[key] = statuses.get(key, 0) + 1

    async with trio.open_nursery() as nursery:
        for http, agent in zip(connections, picks, strict=True):
            nursery.start_soon(one, http, agent)
        await trio.sleep(0.2)  # every task waiting on ``go``
        go.set()
    for http in connections:
        await http.aclose()
    return {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95), "max": max(latencies) * 1000,
            "statuses": statuses}


async def main_async(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="trioscope-bench-burst-"))
    base = str(source_of(args.base, work)) if args.base else None
    targets: list[tuple[str, str, str | None]] = [("no-op POST", "noop", None), ("trioscope", "trioscope", None)]
    if base is not None:
        targets.insert(1, (f"base {args.base}", "trioscope", base))
    figures: dict[tuple[str, str], list[dict[str, Any]]] = {}
    failures = 0
    for spread in args.spread.split(","):
        for cycle in range(args.cycles):
            order = targets if cycle % 2 == 0 else [targets[0], *reversed(targets[1:])]
            for name, kind, pythonpath in order:
                key = (name, "-" if kind == "noop" else spread)  # the baseline's bursts have no spread
                for r in await bursts(kind, spread, args, pythonpath):
                    figures.setdefault(key, []).append(r)
                    failures += sum(v for k, v in r["statuses"].items() if k != "202")
                    print(f"{spread if kind != 'noop' else '':<9} cycle {cycle + 1} {name:<16} {args.creates} at once: "
                          f"p50 {r['p50']:7.1f} ms  p95 {r['p95']:7.1f} ms  max {r['max']:7.1f} ms  {r['statuses']}",
                          flush=True)
    print(f"summary ({args.agents} agents holding a poll, {args.creates} creates at once, medians of "
          f"{args.cycles} fresh servers x {args.rounds} bursts):")
    noop = figures["no-op POST", "-"]
    base_p50 = statistics.median(r["p50"] for r in noop)
    base_p95 = statistics.median(r["p95"] for r in noop)
    print(f"  {'no-op POST':<16}           p50 {base_p50:7.1f} ms  p95 {base_p95:7.1f} ms")
    for (name, spread), runs in figures.items():
        if name == "no-op POST":
            continue
        p50, p95 = statistics.median(r["p50"] for r in runs), statistics.median(r["p95"] for r in runs)
        print(f"  {name:<16} {spread:<9} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  ({p50 / base_p50:.2f}x / "
              f"{p95 / base_p95:.2f}x the no-op burst's)")
    print(f"  answers other than 202: {failures}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=400)
    parser.add_argument("--creates", type=int, default=360)
    parser.add_argument("--spread", default=",".join(SPREADS), help=f"comma-separated, of {', '.join(SPREADS)}")
    parser.add_argument("--cycles", type=int, default=2, help="fresh servers per target, alternated")
    parser.add_argument("--rounds", type=int, default=2, help="bursts per server")
    parser.add_argument("--base", help="also the code of this revision (git archive of its src)")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.agents, args.creates, args.cycles, args.rounds = 40, 30, 1, 1
    if not set(args.spread.split(",")) <= set(SPREADS):
        parser.error(f"--spread: of {', '.join(SPREADS)}")
    return trio.run(main_async, args)


if __name__ == "__main__":
    raise SystemExit(main())
