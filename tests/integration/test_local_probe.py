"""The probe ``trioscope serve`` starts beside itself ends with its server,
however the server ends: stopped by a signal, or killed outright (kill -9),
when the server has no chance to end it by its pid."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile

import psutil
import pytest

from tests.server_process import ServerProcess
from tests.waiting import eventually

PARENT_GONE = "parent process gone (end of file on stdin): stopping"


def _gone(process: psutil.Process) -> bool:
    """Exited: a process orphaned by kill -9 of its server is reaped by pid 1,
    which in a container may never do it, so a zombie counts as gone."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _end(process: psutil.Process | None) -> None:
    """Kill ``process`` if a failed test left it running (psutil checks the pid
    still names the same process)."""
    if process is not None and not _gone(process):
        process.kill()


async def _probe_of(server: ServerProcess) -> psutil.Process:
    async def started() -> psutil.Process | None:
        children = psutil.Process(server.pid).children()
        return next((c for c in children if "trioscope_probe" in c.cmdline()), None)
    return await eventually(started)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM],
                         ids=["kill -9", "SIGINT", "SIGTERM"])
async def test_the_local_probe_ends_with_its_server(signum: signal.Signals) -> None:
    probe: psutil.Process | None = None
    try:
        with ServerProcess(env={"TRIOSCOPE_AGENTS_LOCAL_PROBE": "true"}) as server:
            probe = await _probe_of(server)
            server.send_signal(signum)
            server.wait()

            async def probe_gone() -> bool:
                return _gone(probe)
            await eventually(probe_gone)
            log = server.stderr()  # the probe logs to its server's stderr, which outlives the server
        if signum == signal.SIGKILL:
            assert PARENT_GONE in log
        else:  # a server that stops ends its probe by pid, as before
            assert "local probe stopped" in log and PARENT_GONE not in log
    finally:
        _end(probe)


async def test_a_probe_told_to_exit_with_its_parent_stops_when_its_stdin_closes() -> None:
    with tempfile.TemporaryFile(mode="w+t") as stderr:
        # Port 1 on loopback answers nothing: the probe retries for ever unless its parent goes.
        proc = subprocess.Popen([sys.executable, "-m", "trioscope_probe", "--server", "http://127.0.0.1:1",
                                 "--exit-with-parent"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=stderr)
        try:
            assert proc.stdin is not None
            proc.stdin.close()  # what the kernel does when the parent dies, however it dies
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr.seek(0)
        log = stderr.read()
    assert PARENT_GONE in log
