"""A worker of ``--workers`` restarted beside a serving one, with a report bus,
takes no connection from the shared socket until it has read the stream to its
end (``ServingWorker.hold``): a readiness probe on the port used to meet it
answering 503 ``catching_up`` (1-2 in 20 for ~15 s on a stream of ~23k reports)
while the other worker was ready."""

from __future__ import annotations

import functools
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import trio

from tests.bus_server import publish_dated, report_path
from tests.server_process import ServerProcess
from tests.waiting import eventually
from tests.workers.test_serve_workers import _answering_worker, _ending_every_worker, _workers

REPORTS = 4000
AGENTS = 40
CAUGHT_UP = "report stream read to its end"
"""The log line each worker says once it has read the stream (``bus_caught_up``)."""


async def _poll(server: ServerProcess, answers: list[tuple[str, int, str]], done: trio.Event) -> None:
    """``/health/ready`` and a topology view, each on a new connection, until ``done``."""
    while not done.is_set():
        for path in ("/health/ready", "/api/v1/query/topology?view=hosts"):
            async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
                response = await client.get(path)
            answers.append((path, response.status_code, response.text[:200]))
        await trio.sleep(0.01)


@asynccontextmanager
async def _two_workers_on_a_stream(postgres_url: str) -> AsyncIterator[ServerProcess]:
    """Two workers on a bus stream of ``REPORTS`` reports, each read by both."""
    with report_path("bus") as bus, \
            _ending_every_worker(["--workers", "2", "--database", postgres_url, *bus]) as server:
        server.read_banner(timeout=60)
        server.wait_ready()
        # Put on the stream as the workers would have (posting them took ~25 s of the test).
        now = time.time()
        reports = [(n % AGENTS, now - (REPORTS - n) * 0.001) for n in range(REPORTS)]
        await trio.to_thread.run_sync(functools.partial(publish_dated, bus[1], bus[3], reports, containers=1,
                                                        processes=2, connections=0))

        async def both_caught_up() -> bool:
            return server.stderr().count(CAUGHT_UP) >= 2

        await eventually(both_caught_up, deadline=30)
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            async def every_report_merged() -> bool:
                stats = (await client.get("/api/v1/query/stats")).json()
                return bool(stats["bus"]["lag"] == 0 and stats["bus"]["merged_sequence"] >= REPORTS)

            for _ in range(4):  # new connections: either worker may answer each
                await eventually(every_report_merged, deadline=30)
        yield server


def _answered_by(server: ServerProcess, token: str, pid: int) -> bool:
    """Whether worker ``pid`` answers a new connection, the other worker being
    stopped if it took the first one (the kernel's choice: ``_both_answer``)."""
    answered = _answering_worker(server, token)
    if answered["pid"] != pid:
        stopped = answered["pid"]
        os.kill(stopped, signal.SIGSTOP)
        try:
            answered = _answering_worker(server, token)
        finally:
            os.kill(stopped, signal.SIGCONT)
    return answered["pid"] == pid


async def test_a_restarted_worker_takes_no_connection_until_it_has_read_the_stream(postgres_url: str) -> None:
    async with _two_workers_on_a_stream(postgres_url) as server:
        token = server.user_token(role="ADMIN")
        victim = _answering_worker(server, token)
        os.kill(victim["pid"], signal.SIGKILL)
        answers: list[tuple[str, int, str]] = []
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(_poll, server, answers, done)

            async def restarted_caught_up() -> bool:
                return server.stderr().count(CAUGHT_UP) >= 3

            await eventually(restarted_caught_up, deadline=45)
            caught_up = len(answers)

            async def served_on() -> bool:  # and forty answers more, from either worker
                return len(answers) >= caught_up + 40

            await eventually(served_on)
            done.set()
        failed = [answer for answer in answers if answer[1] != 200]
        assert not failed, f"{len(failed)} of {len(answers)} answers were not 200: {failed[:5]}"

        log = server.stderr()
        index = victim["index"]
        match = re.search(rf"worker {index} \(pid (\d+)\) reads the report stream before it takes connections", log)
        assert match, log
        new_pid = int(match.group(1))
        assert re.search(rf"worker {index} ready \(pid {new_pid}\)", log), log
        assert _answered_by(server, token, new_pid)  # the restarted worker serves
        assert "no worker serves" not in log, log


async def _kill_and_find_held(server: ServerProcess, victim: dict[str, int]) -> int:
    """Kill ``victim`` (an answering worker) and return the pid of the worker
    started in its place, once it says it reads the stream before serving."""
    os.kill(victim["pid"], signal.SIGKILL)
    holding = re.compile(rf"worker {victim['index']} \(pid (\d+)\) reads the report stream before")

    async def held() -> re.Match[str] | None:
        return holding.search(server.stderr())

    return int((await eventually(held, deadline=30)).group(1))


async def test_a_held_worker_serves_at_once_when_no_other_worker_serves(postgres_url: str) -> None:
    """The guard: the serving worker dies while the restarted one is still
    reading the stream (stopped there, to be sure): the parent tells it to
    serve (``SERVE_NOW``) rather than leave the port unserved until it has read."""
    async with _two_workers_on_a_stream(postgres_url) as server:
        token = server.user_token(role="ADMIN")
        victim = _answering_worker(server, token)
        (survivor,) = (p.pid for p in _workers(server) if p.pid != victim["pid"])
        held_pid = await _kill_and_find_held(server, victim)
        os.kill(held_pid, signal.SIGSTOP)
        try:
            assert server.stderr().count(CAUGHT_UP) == 2, "the restarted worker read the stream before it was stopped"
            os.kill(survivor, signal.SIGKILL)
            told = f"no worker serves: worker {victim['index']} (pid {held_pid}) takes connections"

            async def told_to_serve() -> bool:
                return told in server.stderr()

            await eventually(told_to_serve, deadline=10)
        finally:
            os.kill(held_pid, signal.SIGCONT)

        async def serves() -> bool:
            return await trio.to_thread.run_sync(_answered_by, server, token, held_pid)

        await eventually(serves, deadline=20)


async def test_a_held_worker_stops_cleanly_without_serving(postgres_url: str) -> None:
    """SIGTERM while a worker is held (stopped there, to be sure): it stops
    without taking connections, and the pool exits 0."""
    async with _two_workers_on_a_stream(postgres_url) as server:
        token = server.user_token(role="ADMIN")
        victim = _answering_worker(server, token)
        held_pid = await _kill_and_find_held(server, victim)
        os.kill(held_pid, signal.SIGSTOP)
        try:
            server.send_signal(signal.SIGTERM)
        finally:
            os.kill(held_pid, signal.SIGCONT)
        assert await trio.to_thread.run_sync(server.wait, 60) == 0, server.stderr()
        log = server.stderr()
        assert "no worker serves" not in log, log
        assert not re.search(rf"worker {victim['index']} (ready|serving) \(pid {held_pid}\)", log), log
