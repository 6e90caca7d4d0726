"""The probe ``trioscope serve`` starts beside itself ends with its server,
however the server ends: stopped by a signal, or killed outright (kill -9),
when the server has no chance to end it by its pid."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from tests.integration.test_commands import Operator
from tests.integration.test_probe import probe
from tests.server_process import ServerProcess
from tests.waiting import eventually
from trioscope_probe.cli import default_agent_id

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
        return next((c for c in psutil.Process(server.pid).children() if _is_probe(c)), None)
    return await eventually(started)


def _is_probe(process: psutil.Process) -> bool:
    """Whether ``process`` is a running local probe: one killed a moment ago and
    not reaped yet by the server is a zombie, whose command line cannot be read."""
    try:
        return "trioscope_probe" in process.cmdline()
    except (psutil.ZombieProcess, psutil.NoSuchProcess):
        return False


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


@pytest.mark.parametrize("log_format", ["json", "human"])
async def test_the_local_probe_logs_as_its_server_does(log_format: str) -> None:
    """Its lines go into the server's stream: one format (JSON objects, or the
    server's human lines with UTC times) and the server's level."""
    with ServerProcess(env={"TRIOSCOPE_AGENTS_LOCAL_PROBE": "true", "TRIOSCOPE_LOG_FORMAT": log_format}) as server:
        probe = await _probe_of(server)
        assert probe.cmdline()[-4:] == ["--log-format", log_format, "--log-level", "info"]

        async def connected() -> bool:
            return "connected to" in server.stderr()
        await eventually(connected)
        lines = [line for line in server.stderr().splitlines() if "trioscope_probe" in line]
    assert lines
    for line in lines:
        if log_format == "json":
            assert orjson.loads(line)["logger"] == "trioscope_probe", line
        else:
            assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR) +trioscope_probe: ", line), line


async def test_the_local_probe_gives_way_to_a_probe_enrolled_under_its_agent_id(tmp_path: Path) -> None:
    """A probe enrolled on the server's own host takes the hostname as its agent
    id, as the local probe does: the local probe's unsigned reports were
    refused (401 signature_required, audited) every interval, for ever."""
    with ServerProcess(env={"TRIOSCOPE_AGENTS_LOCAL_PROBE": "true"}) as server:
        await _probe_of(server)
        async with httpx.AsyncClient(timeout=30) as client:
            deployment = await Operator(server, "ops", "acme").create_deployment(client)
        with probe(server.base_url, default_agent_id(), "--deployment-hash", deployment["deployment_hash"],
                   "--enrollment-token", deployment["enrollment_token"], "--state-dir", str(tmp_path)) as enrolled:
            gave_way = f"agent id {default_agent_id()} is enrolled by a probe with credentials"

            async def said() -> bool:
                return gave_way in server.stderr()
            await eventually(said, deadline=60)
            assert enrolled.poll() is None
        log = server.stderr()
    assert log.count(gave_way) == 1 and "signature_required" not in log.split(gave_way)[1], log


async def test_a_local_probe_that_refuses_its_configuration_is_said_and_not_started_again() -> None:
    """``TRIOSCOPE_PROBE_INTERVAL=0`` in the server's environment: the probe
    refused it and exited 2, and the server said nothing more (a reviewer's)."""
    env = {"TRIOSCOPE_AGENTS_LOCAL_PROBE": "true", "TRIOSCOPE_PROBE_INTERVAL": "0"}
    with ServerProcess(env=env) as server:
        async def said() -> bool:
            return "the local probe refused its configuration (exit status 2" in server.stderr()
        await eventually(said)
        assert server.stderr().count("local probe started") == 1


async def test_a_local_probe_killed_by_itself_is_said_and_started_again() -> None:
    first: psutil.Process | None = None
    again: psutil.Process | None = None
    try:
        with ServerProcess(env={"TRIOSCOPE_AGENTS_LOCAL_PROBE": "true"}) as server:
            first = await _probe_of(server)
            first.kill()

            async def restarted() -> psutil.Process | None:
                found = await _probe_of(server)
                return found if found.pid != first.pid else None
            again = await eventually(restarted)
            assert "the local probe ended by itself (killed by signal 9); starting it again in 1 s" in server.stderr()
    finally:
        _end(first)
        _end(again)
