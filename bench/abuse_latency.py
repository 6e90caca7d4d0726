"""What one abusive client's traffic costs every other client: ``/health`` timed
from a client of its own while the abuse runs, beside the same server idle.

    .venv/bin/python bench/abuse_latency.py [--base REV] [--seconds 10] [--cases sockets,agents,writes,late]

Cases (each against a fresh server, one at a time):

* ``sockets``: four live-view sockets without a token (``/api/v1/ws``) sending
  64 KiB messages as fast as they can;
* ``agents``: two enrolled agents, two sockets each (``/ws/agent``), sending
  ~1 MB ``ping`` messages as fast as they can;
* ``writes``: one agent writing 10,000 metric points (line protocol, ~250 KiB)
  back to back;
* ``late``: the same agent writing 10,000 points older than what its four
  series hold (``--max-data-age 720h``, the newest day of each filled first);
* ``results``: two agents of one deployment's tenant each running commands
  and reporting ~9.5 MB results of 220,000 small objects back to back (each
  within its byte budget: a report refused is sent again after Retry-After).

With ``--base REV`` each case runs first against that revision's ``src`` (an
export of it on ``PYTHONPATH``), then against this tree: the ratio is this
tree's p50 during the abuse over the base's, both measured in the same run
(the machine's noise moves both).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.integration.test_commands import setup  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402
from tests.status_agent import StatusAgent  # noqa: E402

Abuse = Callable[[ServerProcess, trio.Event], Awaitable[str]]


async def health(url: str, seconds: float) -> list[float]:
    """Milliseconds of each ``/health`` over ``seconds``, one at a time, 20 ms apart."""
    took = []
    async with httpx.AsyncClient(timeout=30) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.perf_counter()
            await client.get(url + "/health")
            took.append((time.perf_counter() - began) * 1000)
            await trio.sleep(0.02)
    return sorted(took)


def quantiles(took: list[float]) -> str:
    return f"p50 {statistics.median(took):6.1f} ms, p95 {took[int(len(took) * 0.95)]:6.1f}, max {took[-1]:6.1f}"


async def sockets(server: ServerProcess, stop: trio.Event) -> str:
    message = json.dumps({"type": "view", "pad": "x" * 60_000})
    sent = 0

    async def one() -> None:
        nonlocal sent
        url = server.base_url.replace("http", "ws") + "/api/v1/ws?view=hosts"
        async with open_websocket_url(url, message_queue_size=0) as ws, trio.open_nursery() as nursery:
            async def drain() -> None:
                while True:
                    await ws.get_message()
            nursery.start_soon(drain)
            while not stop.is_set():
                await ws.send_message(message)
                sent += 1
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(one)
        await stop.wait()
        nursery.cancel_scope.cancel()
    return f"{sent} messages sent"


async def agents(server: ServerProcess, stop: trio.Event) -> str:
    message = json.dumps({"type": "ping", "items": [{"a": 1}] * 100_000})
    answers: dict[str, int] = {}
    async with httpx.AsyncClient() as client:
        enrolled = [(await setup(server, client))[1] for _ in range(2)]

    async def one(agent: StatusAgent) -> None:
        async with agent.socket() as socket, trio.open_nursery() as nursery:
            async def read() -> None:
                while True:
                    answer = json.loads(await socket.ws.get_message())
                    kind = str(answer["error"]["status"]) if answer["type"] == "ack" else answer["type"]
                    answers[kind] = answers.get(kind, 0) + 1
            nursery.start_soon(read)
            while not stop.is_set():
                await socket.ws.send_message(message)
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for agent in enrolled:
            for _ in range(2):
                nursery.start_soon(one, agent)
        await stop.wait()
        nursery.cancel_scope.cancel()
    return f"answers {dict(sorted(answers.items()))}"


def _points(first: int, count: int, at: float) -> bytes:
    return "\n".join(f"cpu,core={i % 4} usage={i % 100} {int((at - 15 * ((first + i) // 4)) * 1e9)}"
                     for i in range(count)).encode()


async def _write_loop(server: ServerProcess, stop: trio.Event, body_of: Callable[[int], bytes],
                      before: Callable[[StatusAgent, httpx.AsyncClient], Awaitable[None]] | None = None) -> str:
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(timeout=60) as client:
        _, agent = await setup(server, client)
        if before is not None:
            await before(agent, client)
        round_no = 0
        while not stop.is_set():
            body = body_of(round_no)
            answer = await client.post(server.base_url + "/api/v1/metrics/write", content=body,
                                       headers={**agent.headers(body), "Content-Type": "text/plain"})
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            round_no += 1
    return f"writes {dict(sorted(statuses.items()))}"


async def writes(server: ServerProcess, stop: trio.Event) -> str:
    now = time.time()
    return await _write_loop(server, stop, lambda n: _points(0, 10_000, now - n * 0.001))


async def late(server: ServerProcess, stop: trio.Event) -> str:
    now = time.time()
    day = 86_400 // 15 * 4  # the newest day of each of the four series

    async def fill(agent: StatusAgent, client: httpx.AsyncClient) -> None:
        for first in range(0, day, 10_000):
            body = _points(first, min(10_000, day - first), now)
            await client.post(server.base_url + "/api/v1/metrics/write", content=body,
                              headers={**agent.headers(body), "Content-Type": "text/plain"})

    return await _write_loop(server, stop, lambda n: _points(day + (n * 10_000) % (20 * day), 10_000, now), fill)


async def results(server: ServerProcess, stop: trio.Event) -> str:
    result = [{"k": i, "v": "x" * 20} for i in range(220_000)]
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(timeout=120) as client:
        pairs = [await setup(server, client) for _ in range(2)]

        async def one(operator: Any, agent: StatusAgent) -> None:
            while not stop.is_set():
                created = await operator.command(client, agent.deployment_hash, type="backup")
                await agent.poll(client, timeout=5)
                while not stop.is_set():
                    answer = await agent.report(client, created["command_id"], result=result)
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                    if answer.status_code == 200:
                        break
                    await trio.sleep(float(answer.headers.get("Retry-After", "1")))

        async with trio.open_nursery() as nursery:
            for operator, agent in pairs:
                nursery.start_soon(one, operator, agent)
            await stop.wait()
            nursery.cancel_scope.cancel()
    return f"reports {dict(sorted(statuses.items()))}"


CASES: dict[str, tuple[Abuse, list[str]]] = {
    "sockets": (sockets, []), "agents": (agents, []), "writes": (writes, []),
    "late": (late, ["--max-data-age", "720h", "--agent-memory-budget", "32MiB"]), "results": (results, []),
}


async def measure(case: str, seconds: float, env: dict[str, str] | None) -> tuple[list[float], list[float], str]:
    abuse, flags = CASES[case]
    with ServerProcess(flags, env=env) as server:
        idle = await health(server.base_url, 4)
        stop = trio.Event()
        said: list[str] = []
        during: list[float] = []

        async def run_abuse() -> None:
            said.append(await abuse(server, stop))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_abuse)
            await trio.sleep(3)  # set-up (enrolment, the late case's fill) and the abuse under way
            during = await health(server.base_url, seconds)
            stop.set()
    return idle, during, said[0] if said else ""


def export(rev: str) -> tuple[tempfile.TemporaryDirectory[str], dict[str, str]]:
    """``rev``'s ``src`` as the package ``trioscope`` in a temporary directory, and the environment that runs it."""
    holder = tempfile.TemporaryDirectory(prefix="abuse-base-")
    package = Path(holder.name) / "trioscope"
    package.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "--strip-components=1", "-C", str(package)], input=archive, check=True)
    return holder, {"PYTHONPATH": holder.name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="a git revision to measure first, beside this tree")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    holder, base_env = export(args.base) if args.base else (None, None)
    try:
        for case in args.cases.split(","):
            trees = ([(args.base, base_env)] if args.base else []) + [("this tree", None)]
            p50 = {}
            for name, env in trees:
                idle, during, said = trio.run(measure, case, args.seconds, env)
                p50[name] = statistics.median(during)
                print(f"{case:8} {name:>10}: idle {quantiles(idle)} | during {quantiles(during)} | {said}", flush=True)
            if args.base:
                print(f"{case:8} /health p50 during the abuse, this tree / {args.base}: "
                      f"{p50['this tree'] / p50[args.base]:.2f}x", flush=True)
    finally:
        if holder is not None:
            holder.cleanup()


if __name__ == "__main__":
    os.environ.setdefault("TRIOSCOPE_LOG_LEVEL", "warning")
    main()
