"""``trioscope-probe`` against a real server: this host, its processes and
connections appear in the topology; a server that is away at first is found
once it comes up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.server_process import ServerProcess
from tests.waiting import eventually


@contextmanager
def probe(server_url: str, agent_id: str, *extra: str) -> Iterator[subprocess.Popen[str]]:
    stderr = tempfile.TemporaryFile(mode="w+t")
    proc = subprocess.Popen([sys.executable, "-m", "trioscope_probe", "--server", server_url, "--interval", "1s",
                             "--agent-id", agent_id, *extra], stdout=subprocess.DEVNULL, stderr=stderr, text=True)

    def read_log() -> str:
        stderr.seek(0)
        return stderr.read()

    proc.read_log = read_log  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        stderr.seek(0)
        proc.stderr_text = stderr.read()  # type: ignore[attr-defined]
        stderr.close()


async def test_the_probe_reports_this_host_with_its_processes_and_connections() -> None:
    with ServerProcess() as server, probe(server.base_url, "probe-here") as process:
        async with httpx.AsyncClient() as client:
            async def listed() -> dict[str, Any] | None:
                agents = (await client.get(f"{server.base_url}/api/v1/agents/list")).json()["agents"]
                return next((a for a in agents if a["agent_id"] == "probe-here" and a["status"] == "healthy"), None)

            await eventually(listed)
            host = f"host:{socket.gethostname()}"

            async def processes() -> dict[str, Any] | None:
                topology = (await client.get(f"{server.base_url}/api/v1/query/topology",
                                             params={"view": "processes"})).json()["topology"]
                return topology["nodes"].get(f"process:{socket.gethostname()}:{process.pid}")

            mine = await eventually(processes)
            assert mine["type"] == "process"
            latest = await client.get(f"{server.base_url}/api/v1/query/agents/probe-here/latest")
            report = latest.json()["report"]
            assert report["host_info"]["hostname"] == socket.gethostname()
            assert report["host_info"]["cpu_info"]["cores"] >= 1
            node = await client.get(f"{server.base_url}/api/v1/query/nodes/{host}")
            assert node.status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_probe_started_before_its_server_keeps_trying_and_then_reports() -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with probe(url, "probe-early") as process:
        async def logged(text: str) -> bool:
            return text in process.read_log()  # type: ignore[attr-defined]

        await eventually(lambda: logged("unreachable"))
        with ServerProcess(["--port", str(port)]) as server:
            await eventually(lambda: logged("connected to"))
            async with httpx.AsyncClient() as client:
                agents = (await client.get(f"{server.base_url}/api/v1/agents/list")).json()["agents"]
                assert any(a["agent_id"] == "probe-early" for a in agents)
    log = process.stderr_text  # type: ignore[attr-defined]
    assert "unreachable" in log and "connected to" in log
    # One line per state change, not one per retry. (Once the server is gone again
    # the probe may rightly say so once more before its own SIGTERM.)
    assert log.split("connected to")[0].count("unreachable") == 1
