"""NATS JetStream for the report-bus tests: the machine's server on
127.0.0.1:4222 (started as ``.ci/run``'s machines do when it is installed but
not running; a session that started it leaves it running, as other sessions
share it), streams of a test's own deleted after it, and servers of a test's
own on a free port for the tests that stop the bus.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import nats
import nats.js.errors
from trioscope.bus import pack_report
from trioscope.bus._client import agent_subject
from trioscope.domain.topology import report_shape
from trioscope.wire import decode_report

from tests.free_port import free_port
from tests.left_behind import LEFT_AFTER, left_behind
from tests.synthetic import host_report

NATS_SERVER = "/usr/sbin/nats-server"
HOST, PORT = "127.0.0.1", 4222
URL = f"nats://{HOST}:{PORT}"
START_TIMEOUT = 20.0


class NatsMissing(RuntimeError):
    """nats-server is not installed here (the caller skips)."""


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def _wait_until_answers(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(port):
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"nats-server exited ({process.returncode}) before it answered on port {port}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nats-server did not answer on {HOST}:{port} within {START_TIMEOUT:g} s")
        time.sleep(0.05)


def ensure_running() -> str:
    """The URL of the machine's NATS JetStream, started if it was not, and
    rid of test streams an earlier run left (once per process:
    ``forget_left_streams``).

    Raises:
        NatsMissing: nats-server is not installed.
    """
    if not _answers(PORT):
        if not os.path.exists(NATS_SERVER):
            raise NatsMissing(f"nats-server is not installed ({NATS_SERVER}): the report-bus tests need it")
        subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", NATS_SERVER, "--",
                        "-a", HOST, "-p", str(PORT), "-js", "-sd", "/var/lib/nats-server"],
                       check=True, capture_output=True, timeout=START_TIMEOUT)
        _wait_until_answers(PORT)
    _forget_left_once()
    return URL


@functools.cache
def _forget_left_once() -> None:
    forget_left_streams(URL)


def forget_left_streams(url: str, older_than: float = LEFT_AFTER) -> list[str]:
    """Delete the test streams (``stream_name``) created more than
    ``older_than`` seconds ago (``tests.left_behind``): JetStream keeps room
    for each stream's whole ``max_bytes``.
    Returns their names."""
    async def forget() -> list[str]:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            js = nc.jetstream()
            left = [info.config.name for info in await js.streams_info()
                    if (info.config.name or "").startswith(_TEST_PREFIX) and info.created is not None
                    and left_behind(info.created.timestamp(), older_than)]
            for name in left:
                assert name is not None
                try:
                    await js.delete_stream(name)
                except nats.js.errors.NotFoundError:
                    pass  # another process of the run deleted it first
            return [name for name in left if name is not None]
        finally:
            await nc.close()

    return _run_asyncio(forget)


T = TypeVar("T")


def _run_asyncio(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(work())`` in a thread of its own: the calling thread may
    hold an asyncio loop marked running (Playwright's sync API keeps one for
    the UI tests' browser), and ``asyncio.run`` refuses to start beside it."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(work())).result()


_TEST_PREFIX = "test_"


def stream_name() -> str:
    """A stream (and subject prefix) of the test's own."""
    return f"{_TEST_PREFIX}{secrets.token_hex(6)}"


def delete_stream(url: str, stream: str) -> None:
    async def delete() -> None:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            await nc.jetstream().delete_stream(stream)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await nc.close()

    _run_asyncio(delete)


def stream_max_bytes(url: str, stream: str) -> int:
    """The ``max_bytes`` limit ``stream`` was created with."""
    async def read() -> int:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            info = await nc.jetstream().stream_info(stream)
            return int(info.config.max_bytes or -1)
        finally:
            await nc.close()

    return _run_asyncio(read)


class OwnNatsServer:
    """A nats-server of one test, on a free port with its store in a temporary
    directory, stopped (by its pid) and started again on the same port and store."""

    def __init__(self) -> None:
        if not os.path.exists(NATS_SERVER) and shutil.which("nats-server") is None:
            raise NatsMissing(f"nats-server is not installed ({NATS_SERVER}): the report-bus tests need it")
        self.binary = NATS_SERVER if os.path.exists(NATS_SERVER) else str(shutil.which("nats-server"))
        self.port = free_port(HOST)
        self.url = f"nats://{HOST}:{self.port}"
        self._store = tempfile.TemporaryDirectory(prefix="trioscope-nats-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "-a", HOST, "-p", str(self.port), "-js", "-sd", self._store.name],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_until_answers(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def freeze(self, frozen: bool = True) -> None:
        """SIGSTOP (or SIGCONT): a server that keeps its connections open and answers nothing."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP if frozen else signal.SIGCONT)


@contextmanager
def own_nats_server() -> Iterator[OwnNatsServer]:
    server = OwnNatsServer()
    try:
        server.start()  # in the try: one that never answered is ended too
        yield server
    finally:
        if server.process is not None:
            server.freeze(False)  # a stopped process would not see its SIGKILL until continued
        server.stop()
        server._store.cleanup()


@contextmanager
def report_path(mode: str) -> Iterator[tuple[str, ...]]:
    """The server flags of a report path: ``in-process`` (none) or ``bus`` (the
    machine's NATS and a stream of the test's own, deleted after it; skipped
    where nats-server is not installed). For suites that run in both modes."""
    if mode == "in-process":
        yield ()
        return
    import pytest  # only the suites call this

    try:
        url = ensure_running()
    except NatsMissing as exc:
        pytest.skip(str(exc))
    stream = stream_name()
    try:
        yield ("--bus", url, "--bus-stream", stream)
    finally:
        delete_stream(url, stream)


def publish_dated(url: str, stream: str, reports: list[tuple[int, float]], *, containers: int = 4,
                  processes: int = 12, connections: int = 4) -> None:
    """Put host ``index``'s report (of so many containers, processes and
    connections) on ``stream`` as a replica would have, received at ``at``:
    thousands in a second or two, where posting them took tens."""

    async def publish() -> None:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            js = nc.jetstream()
            for start in range(0, len(reports), 200):
                packed = []
                for index, at in reports[start:start + 200]:
                    report = decode_report(host_report(index, timestamp=at, containers=containers, processes=processes,
                                                       connections=connections))
                    data, _ = pack_report(report, at, enrolled=False, shape=report_shape(report),
                                          address="127.0.0.1")
                    packed.append((agent_subject(stream, report.agent_id), data))
                # 200 at once: nats-py's default 1 s for each acknowledgement is too short on a loaded machine.
                await asyncio.gather(*(js.publish(subject, data, stream=stream, timeout=30) for subject, data in packed))
        finally:
            await nc.close()

    _run_asyncio(publish)
