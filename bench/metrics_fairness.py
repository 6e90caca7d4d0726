"""What one tenant's large PromQL reads cost another tenant's reads and an
agent's writes, against a real server (the embedded metric store).

    .venv/bin/python bench/metrics_fairness.py [--base REV] [--seconds 10] [--series 2000]

Tenant "viewer": its agent writes ``--series`` series of 240 samples (an hour
at 15 s); two of its users each loop two range reads of all of them (a day's
``max_over_time`` at 60 s steps) as fast as they are answered, within their
share of the server's time (a 429 waits its Retry-After). Tenant "other",
meanwhile: an instant query of its own three series, one at a time, 60 ms
apart, and its agent's write of three samples, 250 ms apart. Their latencies are
printed idle (the viewer not reading) and during the viewer's reads, p50 /
p95 / max in ms.

With ``--base REV`` the same runs first against that revision's ``src`` (an
export on ``PYTHONPATH``), and the ratio is this tree's p95 during the reads
over the base's, both measured in the same run (the machine's noise moves
both).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from abuse_latency import export  # noqa: E402
from tests.integration.test_commands import Operator, setup  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402
from tests.status_agent import StatusAgent  # noqa: E402

SAMPLES = 240


def quantiles(took: list[float]) -> str:
    if not took:
        return "none"
    ordered = sorted(took)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered):6.1f} p95 {p95:6.1f} max {ordered[-1]:6.1f} ({len(ordered)})"


async def write(client: httpx.AsyncClient, server: ServerProcess, agent: StatusAgent, lines: list[str],
                patient: bool = False) -> float:
    """Milliseconds the write took (``patient``: a 429 is waited out and sent again)."""
    body = "\n".join(lines).encode()
    while True:
        began = time.perf_counter()
        answer = await client.post(server.base_url + "/api/v1/metrics/write", content=body,
                                   headers={**agent.headers(body), "Content-Type": "text/plain"})
        took = (time.perf_counter() - began) * 1000
        if not (patient and answer.status_code == 429):
            break
        await trio.sleep(float(answer.headers.get("Retry-After", "1")))
    assert answer.status_code == 204, answer.text
    return took


async def fill(client: httpx.AsyncClient, server: ServerProcess, agent: StatusAgent, series: int, now: float) -> None:
    lines = [f"load,host=h{n} v={step} {int((now - 15 * (SAMPLES - step)) * 1e9)}"
             for step in range(SAMPLES) for n in range(series)]
    for first in range(0, len(lines), 10_000):
        await write(client, server, agent, lines[first:first + 10_000], patient=True)


async def viewer(client: httpx.AsyncClient, server: ServerProcess, user: Operator, stop: trio.Event,
                 counts: dict[int, int]) -> None:
    now = time.time()
    params = {"query": "max_over_time(load_v[5m])", "start": str(now - 86_400), "end": str(now), "step": "60"}
    while not stop.is_set():
        answer = await client.get(server.base_url + "/prometheus/api/v1/query_range", params=params,
                                  headers=user.auth)
        counts[answer.status_code] = counts.get(answer.status_code, 0) + 1
        if answer.status_code == 200:
            counts[-1] = max(counts.get(-1, 0), len(answer.json()["data"]["result"]))  # series in an answer
        if answer.status_code == 429:
            with trio.move_on_at(trio.current_time() + float(answer.headers.get("Retry-After", "1"))):
                await stop.wait()


async def other(client: httpx.AsyncClient, server: ServerProcess, user: Operator, agent: StatusAgent,
                seconds: float) -> tuple[list[float], list[float]]:
    reads: list[float] = []
    writes: list[float] = []
    end = time.monotonic() + seconds

    async def writing() -> None:
        while time.monotonic() < end:  # within the agent's 600 requests a minute
            writes.append(await write(client, server, agent, [f"mine,n={n} v=1" for n in range(3)]))
            await trio.sleep(0.25)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writing)
        while time.monotonic() < end:
            began = time.perf_counter()
            answer = await client.get(server.base_url + "/prometheus/api/v1/query", params={"query": "sum(mine_v)"},
                                      headers=user.auth)
            reads.append((time.perf_counter() - began) * 1000)
            assert answer.status_code == 200, answer.text
            await trio.sleep(0.06)  # within the user's 1,200 requests a minute
    return reads, writes


async def measure(seconds: float, series: int, env: dict[str, str] | None) -> dict[str, object]:
    with ServerProcess([], env=env) as server:
        async with httpx.AsyncClient(timeout=120) as client:
            viewing, viewer_agent = await setup(server, client)
            second = Operator(server, viewing.user_id + "-2", viewing.tenant)
            others, other_agent = await setup(server, client)
            await fill(client, server, viewer_agent, series, time.time())
            idle = await other(client, server, others, other_agent, 3)
            stop = trio.Event()
            counts: dict[int, int] = {}
            async with trio.open_nursery() as nursery:
                for user in (viewing, viewing, second, second):
                    nursery.start_soon(viewer, client, server, user, stop, counts)
                await trio.sleep(2)  # the reads under way
                during = await other(client, server, others, other_agent, seconds)
                stop.set()
    return {"idle": idle, "during": during, "viewer": dict(sorted(counts.items()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="a git revision to measure first, beside this tree")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--series", type=int, default=2000)
    args = parser.parse_args()
    holder, base_env = export(args.base) if args.base else (None, None)
    try:
        p95: dict[str, float] = {}
        for name, env in ([(args.base, base_env)] if args.base else []) + [("this tree", None)]:
            got = trio.run(measure, args.seconds, args.series, env)
            idle_reads, idle_writes = got["idle"]  # type: ignore[misc]
            reads, writes = got["during"]  # type: ignore[misc]
            print(f"{name:>10}: other's query  idle {quantiles(idle_reads)} | during {quantiles(reads)}", flush=True)
            print(f"{name:>10}: other's write  idle {quantiles(idle_writes)} | during {quantiles(writes)}", flush=True)
            print(f"{name:>10}: the viewer's reads answered {got['viewer']} (-1: most series in one)", flush=True)
            p95[name] = sorted(reads)[int(len(reads) * 0.95)]
        if args.base:
            print(f"other's query p95 during the reads, this tree / {args.base}: "
                  f"{p95['this tree'] / p95[args.base]:.2f}x", flush=True)
    finally:
        if holder is not None:
            holder.cleanup()


if __name__ == "__main__":
    os.environ.setdefault("TRIOSCOPE_LOG_LEVEL", "warning")
    main()
