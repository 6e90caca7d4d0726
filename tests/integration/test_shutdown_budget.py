"""What the server shields from cancellation holds no shutdown past its budget,
against a real server: writes to clients that read nothing end with the graceful
phase; a second signal ends them at once."""

from __future__ import annotations

import signal
import subprocess
import time

import httpx
import pytest
import trio

from tests.integration.test_live_resets import open_unread
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually

EXIT_DEADLINE = 15.0
"""Seconds a stopping server is given to exit: far above its budget here (2 s) and far
below what held it before (``server.write_timeout``, 30 s)."""
HOSTS = 30
PROCESSES = 300
"""Each host's: a processes view of ~9,000 nodes, megabytes, which a client that reads
nothing never takes (its socket's buffers hold a few hundred KiB)."""
UNREAD = 5


async def _exit_code(server: ServerProcess) -> int:
    """The server's exit code, once it exited (``EXIT_DEADLINE`` at most)."""
    try:
        return await trio.to_thread.run_sync(server.wait, EXIT_DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server did not exit within {EXIT_DEADLINE:g} s:\n{server.stderr()[-4000:]}")


async def _logged(server: ServerProcess, text: str) -> None:
    async def said() -> bool:
        return text in server.stderr()

    await eventually(said)


async def _load(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        for host in range(1, HOSTS + 1):
            report = host_report(host, timestamp=time.time(), containers=2, processes=PROCESSES, connections=0)
            assert (await http.post("/api/v1/reports", json=report)).status_code == 202

        async def loaded() -> bool:
            stats = (await http.get("/api/v1/query/stats")).json()["topology"]
            return bool(stats["nodes_by_type"].get("host") == HOSTS)

        await eventually(loaded)


@pytest.mark.parametrize(("args", "second", "code"), [
    # Cut when the graceful phase ends (1 s), as Hypercorn's connections are: a clean stop.
    pytest.param(["--shutdown-timeout", "2s"], None, 0, id="at-the-drains-end"),
    # A second signal: at once, long before the graceful phase's end or the write timeout.
    pytest.param(["--shutdown-timeout", "60s", "--write-timeout", "60s"], signal.SIGINT, 130, id="second-signal"),
])
async def test_clients_that_read_nothing_hold_no_shutdown(args: list[str], second: signal.Signals | None,
                                                          code: int) -> None:
    with ServerProcess(args) as server:
        await _load(server)
        # One address each: resets held back for their address (``--ws-max-reset-bytes-per-address``)
        # are not being written, and each of these is.
        unread = [await open_unread(server, "/api/v1/ws?view=processes", f"127.0.0.{2 + i}") for i in range(UNREAD)]
        try:
            first = second or signal.SIGTERM
            server.send_signal(first)
            if second is not None:
                await _logged(server, f"received {first.name}: shutting down")
                server.send_signal(second)
            assert await _exit_code(server) == code
        finally:
            for sock in unread:
                sock.close()
    log = server.stderr()
    assert "Traceback" not in log and "crashed" not in log, log
    if second is None:
        assert f"closed {UNREAD} connection(s) still blocked writing to clients that read nothing" in log, log
        assert "stopped cleanly" in log and "read nothing for 30 s" not in log
    else:
        assert f"received {second.name} again: stopped at once" in log, log
