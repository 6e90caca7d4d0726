"""What the worker pool's parent logs when a worker has started: without a
bus it is ready; with one it serves, and is ready (``/health/ready``) only
once it has read the report stream (a restarted worker on a long stream took
~90 s: the parent logged it "ready" meanwhile, while it answered 503
``catching_up``)."""

from __future__ import annotations

import re

import httpx

from tests.bus_server import report_path
from tests.waiting import eventually
from tests.workers.test_serve_workers import _ending_every_worker


async def test_a_worker_on_a_bus_is_logged_serving_and_ready_once_it_has_read_the_stream(postgres_url: str) -> None:
    with report_path("bus") as bus, \
            _ending_every_worker(["--workers", "2", "--database", postgres_url, *bus]) as server:
        server.read_banner(timeout=60)
        log = server.stderr()
        for index in (1, 2):
            assert re.search(rf"worker {index} serving \(pid \d+\); ready \(/health/ready\) once it has read the "
                             "report stream", log), log
        assert not re.search(r"worker \d ready \(pid", log), log
        assert re.search(r"2 workers serving on \S+; each ready \(/health/ready\) once", log), log
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            async def ready() -> bool:
                return (await client.get("/health/ready")).status_code == 200
            await eventually(ready, deadline=60)


def test_a_worker_without_a_bus_is_logged_ready(postgres_url: str) -> None:
    with _ending_every_worker(["--workers", "2", "--database", postgres_url]) as server:
        server.read_banner(timeout=60)
        log = server.stderr()
        assert re.search(r"worker 1 ready \(pid \d+\)", log) and re.search(r"worker 2 ready \(pid \d+\)", log), log
        assert "2 workers ready on " in log, log
