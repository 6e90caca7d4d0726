"""``trioscope serve --workers N`` as a user runs it: real processes on one port,
workers ended by their pids."""

from __future__ import annotations

import os
import re
import socket
import signal
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
import trustme

from tests.bus_server import report_path
from tests.server_process import ServerProcess, run_cli
from tests.waiting import eventually


def _workers(server: ServerProcess) -> list[psutil.Process]:
    return [child for child in psutil.Process(server.pid).children()
            if child.status() != psutil.STATUS_ZOMBIE and "trioscope.workers" in child.cmdline()]


def _answering_worker(server: ServerProcess, token: str) -> dict[str, int]:
    """Which worker answered a request on a new connection."""
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        response = client.get("/api/v1/runtime")
    assert response.status_code == 200, response.text
    worker = response.json()["worker"]
    assert worker is not None
    return worker  # type: ignore[no-any-return]


def _both_answer(ask: Callable[[], dict[str, int]]) -> set[int]:
    """The worker indexes that answered two new connections, the second while
    the first answerer is stopped. Which worker accepts a connection from the
    shared socket is the kernel's choice (one may take a hundred in a row from
    a lone client), so a stopped worker is what makes the other one answer."""
    first = ask()
    os.kill(first["pid"], signal.SIGSTOP)
    try:
        second = ask()
    finally:
        os.kill(first["pid"], signal.SIGCONT)
    return {first["index"], second["index"]}


def _kill_all(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def _ending_every_worker(args: list[str]) -> Iterator[ServerProcess]:
    """``ServerProcess(args)``; every worker pid seen is ended with it."""
    seen: set[int] = set()
    with ServerProcess(args) as server:
        seen.update(p.pid for p in _workers(server))
        try:
            yield server
        finally:
            if server.proc is not None and server.proc.poll() is None:
                seen.update(p.pid for p in _workers(server))
            _kill_all(seen)


@pytest.fixture
def workers_server(postgres_url: str) -> Iterator[ServerProcess]:
    """Two workers on PostgreSQL."""
    with _ending_every_worker(["--workers", "2", "--database", postgres_url]) as server:
        server.read_banner()
        yield server


@pytest.fixture
def bus_workers_server(postgres_url: str) -> Iterator[ServerProcess]:
    """Two workers on PostgreSQL and a bus (a stream of the test's own).
    A plain fixture: the stream is deleted with asyncio, outside the test's Trio run."""
    with report_path("bus") as bus, _ending_every_worker(["--workers", "2", "--database", postgres_url, *bus]) as server:
        yield server


async def test_workers_on_a_bus_print_their_banner(bus_workers_server: ServerProcess) -> None:
    """With ``--bus`` a worker's banner ends "Serving; ready (/health/ready) once
    the report stream is read..." rather than "Ready.": the parent, which waited
    for "Ready.", printed no banner at all (nor started its local probe)."""
    server = bus_workers_server
    banner = server.read_banner()
    assert banner[-1].startswith("Serving; ready (/health/ready) once the report stream is read")
    assert "Workers:               2 processes on this port" in banner
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        async def ready() -> bool:
            return (await client.get("/health/ready")).status_code == 200
        await eventually(ready, deadline=60)


def test_more_than_one_worker_on_sqlite_is_refused_with_exit_2():
    for args, env in ((["serve", "--workers", "2", "--port", "0"], {}),
                      (["serve", "--port", "0"], {"TRIOSCOPE_SERVER_WORKERS": "3"})):
        result = run_cli(args, env={"TRIOSCOPE_STORAGE_DATA_DIR": "/nonexistent-trioscope-dir", **env})
        assert result.returncode == 2, result.stderr
        assert "needs a PostgreSQL store" in result.stderr
        assert "--database postgresql://" in result.stderr and "--workers 1" in result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""


async def test_two_workers_on_one_port_both_answer_and_say_which(workers_server: ServerProcess):
    server = workers_server
    assert any(line.startswith("Workers:") and "2" in line for line in server.banner)
    assert len(_workers(server)) == 2
    token = server.user_token(role="ADMIN")
    assert _both_answer(lambda: _answering_worker(server, token)) == {1, 2}
    metrics = {re.search(r'worker="(\d+)"', line).group(1)  # type: ignore[union-attr]
               for _ in range(40) for line in httpx.get(f"{server.base_url}/metrics").text.splitlines()
               if line.startswith("app_agents_total")}
    assert metrics <= {"1", "2"} and metrics
    log = server.stderr()
    assert "[worker 1]" in log and "[worker 2]" in log


async def test_a_killed_worker_is_restarted_and_logged_while_the_port_answers(workers_server: ServerProcess):
    server = workers_server
    token = server.user_token(role="ADMIN")
    victim = _answering_worker(server, token)
    os.kill(victim["pid"], signal.SIGKILL)
    # The other worker takes every connection meanwhile (the accept queue is shared).
    for _ in range(20):
        assert httpx.get(f"{server.base_url}/health").status_code == 200

    ready_again = re.compile(rf"worker {victim['index']} ready \(pid (?!{victim['pid']}\))(\d+)\)")

    async def restarted() -> re.Match[str] | None:
        return ready_again.search(server.stderr())

    new_pid = int((await eventually(restarted)).group(1))
    assert new_pid in [p.pid for p in _workers(server)] and victim["pid"] not in [p.pid for p in _workers(server)]
    assert f"worker {victim['index']} was killed by SIGKILL; restarting it" in server.stderr()
    assert _both_answer(lambda: _answering_worker(server, token)) == {1, 2}


def test_sigterm_stops_every_worker_and_exits_0(workers_server: ServerProcess):
    server = workers_server
    workers = _workers(server)
    assert server.stop(signal.SIGTERM) == 0
    for worker in workers:
        assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    log = server.stderr()
    assert log.count("] trioscope.server: stopped cleanly") == 2
    assert log.rstrip().endswith("trioscope.workers: stopped cleanly")
    assert "Traceback" not in log


async def test_a_worker_that_keeps_dying_ends_the_parent_with_exit_1(workers_server: ServerProcess):
    server = workers_server
    killed: set[int] = set()

    async def parent_gave_up() -> bool:
        for worker in _workers(server):
            if worker.pid not in killed:
                killed.add(worker.pid)
                _kill_all({worker.pid})
        return server.proc is not None and server.proc.poll() is not None

    await eventually(parent_gave_up, deadline=60)
    assert server.wait() == 1
    log = server.stderr()
    assert "giving up; stopping every worker" in log
    assert "restarting it" in log


async def test_workers_stop_when_the_parent_is_killed(workers_server: ServerProcess):
    server = workers_server

    async def both_started() -> list[psutil.Process]:
        found = _workers(server)
        return found if len(found) == 2 else []

    workers = await eventually(both_started)  # else "all gone" below would hold of none
    server.send_signal(signal.SIGKILL)
    server.wait()

    async def gone() -> bool:
        return all(not w.is_running() or w.status() == psutil.STATUS_ZOMBIE for w in workers)

    await eventually(gone)


def test_two_workers_serve_https_on_one_port(postgres_url: str, tmp_path: Path):
    authority = trustme.CA()
    pem, ca = tmp_path / "server.pem", tmp_path / "ca.pem"
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    authority.cert_pem.write_to_path(str(ca))
    seen_pids: set[int] = set()
    with ServerProcess(["--workers", "2", "--database", postgres_url, "--tls-cert", str(pem),
                        "--tls-key", str(pem)]) as server:
        try:
            assert server.base_url.startswith("https://127.0.0.1:")
            seen_pids.update(p.pid for p in _workers(server))
            token = server.user_token(role="ADMIN")
            context = ssl.create_default_context(cafile=str(ca))

            def ask() -> dict[str, int]:
                with httpx.Client(base_url=server.base_url, verify=context,
                                  headers={"Authorization": f"Bearer {token}"}) as client:
                    response = client.get("/api/v1/runtime")
                assert response.status_code == 200, response.text
                return response.json()["worker"]  # type: ignore[no-any-return]

            assert _both_answer(ask) == {1, 2}
            assert server.stop(signal.SIGTERM) == 0
        finally:
            _kill_all(seen_pids)



def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def _accepted_by_a_worker(server: ServerProcess, client: socket.socket) -> bool:
    """Whether a worker holds the server's end of ``client`` (a connection still
    in the accept queue belongs to no process)."""
    return any(connection.raddr and tuple(connection.raddr)[:2] == client.getsockname()[:2]
               for worker in _workers(server) for connection in worker.net_connections("tcp"))


async def test_once_stopping_the_port_refuses_new_connections_while_workers_drain(postgres_url: str):
    """The parent kept its copy of the listening socket until it exited: while
    a worker drained, new connections were taken into the accept queue, never
    answered, and reset at the end. Refused, a client (or a load balancer)
    goes elsewhere at once."""
    with _ending_every_worker(["--workers", "2", "--database", postgres_url, "--shutdown-timeout", "30s"]) as server:
        server.read_banner()
        port = int(server.base_url.rsplit(":", 1)[1])
        # A body half sent keeps its worker draining until the budget's cut.
        upload = socket.create_connection(("127.0.0.1", port))
        upload.sendall(b"POST /api/v1/reports HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 100000\r\n\r\n{\"agent_id\": ")

        async def accepted() -> bool:
            return _accepted_by_a_worker(server, upload)

        async def refused() -> bool:
            return _refused(port)

        await eventually(accepted)
        server.send_signal(signal.SIGTERM)
        await eventually(refused, deadline=20)
        upload.setblocking(False)
        with pytest.raises(BlockingIOError):
            upload.recv(1)  # still draining: its answer comes at the budget's cut
        assert server.proc is not None and server.proc.poll() is None
        upload.close()
        assert server.wait(60) == 0
