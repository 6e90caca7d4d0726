"""A small HTTP/1.1 load generator for the benchmarks: trio, raw sockets, httptools
(bench/http_client.py).

Each connection is one client (one agent) sending requests back to back over
keep-alive. Run as a separate process so that it does not share the server's
core: ``python bench/loadgen.py URL --connections 32 --seconds 10``; prints one
JSON line with the counts by status.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_client import Closed, Http  # noqa: E402
from tests.synthetic import host_report, iso  # noqa: E402

PLACEHOLDER = "1999-01-01T00:00:00.000000Z"
TEMPLATE_TIME = 1_700_000_000.0
"""The time a template is made at (its containers' creation times come before it:
at 0 they fell before 1970, which the server refuses); each request's own replaces it."""


def report_template(index: int, compact: bool) -> bytes:
    """A report of host ``index`` with a timestamp placeholder."""
    if compact:
        # ~20 KB: 1 host, 10 containers, 100 processes, 200 connections, lean fields.
        doc = host_report(index, timestamp=TEMPLATE_TIME, peers=[index + 1, index + 2])
        for c in doc["docker_info"]["containers"]:
            for key in ("env_names", "status", "created", "networks", "ports"):
                c.pop(key, None)
            c["labels"] = {k: v for k, v in c["labels"].items() if k.startswith("io.kubernetes.pod")}
        for p in doc["processes_info"]["processes"]:
            for key in ("cmdline", "user", "threads", "status"):
                p.pop(key, None)
            if "cgroup" in p:
                p["container_id"] = p.pop("cgroup").split("docker-")[1][:12]
        for conn in doc["network_info"]["connections"]:
            for key in ("protocol", "local_address"):
                conn.pop(key, None)
    else:
        doc = host_report(index, timestamp=TEMPLATE_TIME, peers=[index + 1, index + 2])
    doc["timestamp"] = PLACEHOLDER
    return json.dumps(doc, separators=(",", ":")).encode()


async def client(host: str, port: int, path: str, templates: list[bytes], deadline: float, tally: Counter,
                 turn: list[int], pace: list[float] | None = None) -> None:
    """Send the next of ``templates`` (each a host; ``turn``: the next one's
    number, shared by the connections, and how many may still be sent) until
    ``deadline`` or until none may. ``pace``: [seconds between two requests of
    all connections, when the next may go], shared: a steady rate, not as fast as answered."""
    http = await Http.connect(host, port)
    sequence = 0
    async with http.stream:
        while trio.current_time() < deadline and turn[1] > 0:
            if pace is not None:
                slot = pace[1] = max(pace[1] + pace[0], trio.current_time())
                await trio.sleep_until(slot)
                if trio.current_time() >= deadline:
                    break
            template = templates[turn[0] % len(templates)]
            turn[0] += 1
            turn[1] -= 1
            sequence += 1
            body = template.replace(PLACEHOLDER.encode(), iso(time.time() + sequence * 1e-3).encode())
            try:
                status, _ = await http.request("POST", path, [], body)
            except Closed:
                tally["closed"] += 1
                return
            tally[str(status)] += 1


async def main(url: str, connections: int, seconds: float, compact: bool, first_agent: int, hosts: int,
               requests: int | None, rate: float | None = None) -> None:
    parts = urlsplit(url)
    tally: Counter[str] = Counter()
    budget = requests if requests is not None else 2**62
    if hosts > connections:
        # Every host in turn, whichever connection is free (distinct hosts
        # rotating, not a few agents re-sending): each host once per pass.
        templates = [report_template(first_agent + i, compact) for i in range(hosts)]
        shared = [0, budget]
        work = [(templates, shared)] * connections
    else:  # one host (agent) per connection
        templates = [report_template(first_agent + i, compact) for i in range(connections)]
        work = [([template], [0, budget]) for template in templates]
    print("ready", file=sys.stderr, flush=True)
    deadline = trio.current_time() + seconds
    pace = [1.0 / rate, trio.current_time()] if rate else None
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for own, turn in work:
            nursery.start_soon(client, parts.hostname, parts.port, parts.path or "/", own, deadline, tally, turn, pace)
    elapsed = time.perf_counter() - started
    print(json.dumps({"elapsed": elapsed, "statuses": dict(tally), "body_bytes": len(templates[0])}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--full", action="store_true", help="the verbose ~58 KB report instead of ~20 KB")
    parser.add_argument("--first-agent", type=int, default=0)
    parser.add_argument("--hosts", type=int, default=0,
                        help="distinct hosts, sent in turn over the connections (default: one per connection)")
    parser.add_argument("--requests", type=int, default=None, help="stop after this many requests in all")
    parser.add_argument("--rate", type=float, default=None,
                        help="requests per second of all connections together (default: as fast as answered)")
    args = parser.parse_args()
    trio.run(main, args.url, args.connections, args.seconds, not args.full, args.first_agent, args.hosts,
             args.requests, args.rate)
