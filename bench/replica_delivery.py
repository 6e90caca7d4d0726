"""Two replicas on one PostgreSQL database: how long a command created on
replica A takes to reach an agent's poll held on replica B, against the same
poll held on A itself (the baseline), measured alternately in one run; and a
load run: many commands created through both replicas while many polls are
held on both, each delivered exactly once.

    .venv/bin/python bench/replica_delivery.py [--samples 100] [--commands 1000 --polls 200]

Needs the machine's PostgreSQL (127.0.0.1:5432, trust auth, database test);
everything runs in a schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import statistics
import sys
import time
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.test_commands import Operator, enroll  # noqa: E402 - after the path is set
from tests.postgres import ensure_running, scratch_schema  # noqa: E402
from tests.replicas.cluster import held_polls, on, operator_on  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402
from tests.status_agent import StatusAgent  # noqa: E402

UNLIMITED = ("--rate-per-address", "1000000", "--rate-per-agent", "1000000", "--rate-per-user", "1000000",
             "--registrations-per-address", "1000000",
             "--log-level", "warning")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one_delivery(client: httpx.AsyncClient, operator: Operator, agent: StatusAgent,
                       poll_on: ServerProcess) -> float:
    """Seconds from sending the create (to the operator's replica) to the poll's answer."""
    answered: list[float] = []

    async def poll() -> None:
        polled = await on(agent, poll_on).poll(client, timeout=30)
        answered.append(time.perf_counter())
        assert polled is not None
        await on(agent, poll_on).report(client, polled.command_id, "success", result={})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        while not await held_polls(client, poll_on):
            await trio.sleep(0.005)
        sent = time.perf_counter()
        await operator.command(client, agent.deployment_hash)
    return answered[0] - sent


async def latency(a: ServerProcess, b: ServerProcess, samples: int) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        operator = Operator(a, "bench-user", "bench-tenant")
        agent = await enroll(client, a, operator)
        for _ in range(5):  # warm both replicas' paths
            await one_delivery(client, operator, agent, a)
            await one_delivery(client, operator, agent, b)
        same: list[float] = []
        other: list[float] = []
        for _ in range(samples):  # alternating, so drift hits both alike
            same.append(await one_delivery(client, operator, agent, a))
            other.append(await one_delivery(client, operator, agent, b))
    for name, values in (("poll on A (same replica)", same), ("poll on B (other replica)", other)):
        print(f"enqueue on A -> {name:26} p50 {1000 * statistics.median(values):6.1f} ms"
              f"  p95 {1000 * percentile(values, 0.95):6.1f} ms  max {1000 * max(values):6.1f} ms  (n={len(values)})")
    ratio = percentile(other, 0.95) / percentile(same, 0.95)
    met = "met" if percentile(other, 0.95) < 0.050 else "NOT met"
    print(f"other/same p95 ratio {ratio:.2f}x; target p95 on B < 50 ms: {met}")


async def load(a: ServerProcess, b: ServerProcess, commands: int, polls: int, deployments: int = 20) -> None:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        teams = []
        for n in range(deployments):
            home = (a, b)[n % 2]
            operator = Operator(home, f"load-user-{n}", f"load-tenant-{n}")
            teams.append((operator, await enroll(client, home, operator)))
        delivered: collections.Counter[str] = collections.Counter()
        created: set[str] = set()
        reported: list[str] = []
        done = trio.Event()

        async def keep_polling(agent: StatusAgent) -> None:
            while True:
                polled = await agent.poll(client, timeout=60)
                if polled is None:
                    continue
                delivered[polled.command_id] += 1
                await agent.report(client, polled.command_id, "success", result={})
                reported.append(polled.command_id)
                if len(reported) >= commands:
                    done.set()

        async with trio.open_nursery() as nursery:
            for n in range(polls):
                _, agent = teams[n % deployments]
                nursery.start_soon(keep_polling, on(agent, (a, b)[(n // deployments) % 2]))
            while await held_polls(client, a) + await held_polls(client, b) < polls:
                await trio.sleep(0.05)
            plan = iter(enumerate(itertools.islice(itertools.cycle(teams), commands)))
            started = time.perf_counter()

            async def create() -> None:
                for n, (operator, agent) in plan:
                    made = await operator_on(operator, (a, b)[n % 2]).command(client, agent.deployment_hash)
                    created.add(made["command_id"])

            async with trio.open_nursery() as creators:
                for _ in range(16):
                    creators.start_soon(create)
            await done.wait()
            elapsed = time.perf_counter() - started
            nursery.cancel_scope.cancel()
    once = sum(1 for c in created if delivered[c] == 1)
    print(f"load: {commands} commands created through both replicas while {polls} polls were held on both: "
          f"all delivered and reported in {elapsed:.1f} s ({commands / elapsed:.0f} commands/s end to end); "
          f"delivered exactly once: {once}/{len(created)}; delivered but never created: {len(set(delivered) - created)}")


async def main_async(args: argparse.Namespace) -> None:
    with scratch_schema(ensure_running()) as url:
        with ServerProcess(["--database", url, *UNLIMITED]) as a, ServerProcess(["--database", url, *UNLIMITED]) as b:
            await latency(a, b, args.samples)
            if args.commands:
                await load(a, b, args.commands, args.polls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--commands", type=int, default=0, help="also run the load (e.g. 1000)")
    parser.add_argument("--polls", type=int, default=200)
    trio.run(main_async, parser.parse_args())
    return 0


if __name__ == "__main__":
    sys.exit(main())
