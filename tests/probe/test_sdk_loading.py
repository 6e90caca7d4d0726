"""The docker SDK (with requests and urllib3, ~8 MB resident) is loaded only
once the probe uses a container engine: a probe with no engine configured, or
whose engine's socket is not there, runs without it (``_engine``). Checked in
fresh interpreters: the test process itself has the SDK loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.free_port import free_port
from trioscope_probe._agent import Credentials, save_credentials

DEADLINE = 60.0
LOADED = "import atexit, sys\n" \
    "atexit.register(lambda: print(json.dumps([m for m in ('docker', 'requests') if m in sys.modules])))\n"
"""Says, as the interpreter exits, which of the SDK's modules it loaded."""


def _environment(docker_host: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST" and not k.startswith("TRIOSCOPE_PROBE_")}
    return env if docker_host is None else {**env, "DOCKER_HOST": docker_host}


@pytest.mark.parametrize("docker_host", [None, "unix:///nonexistent/trioscope-test/docker.sock"],
                         ids=["no-engine-configured", "engine-socket-missing"])
def test_a_probe_without_an_engine_runs_without_loading_the_docker_sdk(tmp_path: Path, docker_host: str | None) -> None:
    """The whole probe (publisher, command agent, a collection cycle), its
    server away, until its parent closes its stdin."""
    save_credentials(tmp_path / "credentials.json", Credentials("dep1", "agent-1", "token-1"))
    stderr = tmp_path / "stderr"
    with stderr.open("w") as errors:
        probe = subprocess.Popen(
            [sys.executable, "-c", "import json\n" + LOADED + "from trioscope_probe.cli import main\nmain()",
             "--server", f"http://127.0.0.1:{free_port()}", "--interval", "1s", "--deployment-hash", "dep1",
             "--state-dir", str(tmp_path), "--exit-with-parent"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True, env=_environment(docker_host))
    expected = ["polling for commands", "unreachable (ConnectError"]
    if docker_host is not None:
        expected.append("cannot connect to socket /nonexistent/trioscope-test/docker.sock: No such file or directory")
    try:
        deadline = time.monotonic() + DEADLINE
        while not all(line in stderr.read_text() for line in expected):
            assert probe.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.05)
        out, _ = probe.communicate("", timeout=DEADLINE)  # stdin closed: the probe stops
    finally:
        probe.kill()
    assert probe.returncode == 0, stderr.read_text()
    assert json.loads(out) == []


def test_a_container_control_without_an_engine_fails_without_loading_the_docker_sdk() -> None:
    script = "import json\n" + LOADED + """
import httpx, trio
from trioscope_probe._agent import CommandAgent, Credentials

reports = []

def server(request):
    reports.append(json.loads(request.content))
    return httpx.Response(200, json={"item": {"accepted": True, "command_id": "cmd_1"}})

async def run():
    client = httpx.AsyncClient(transport=httpx.MockTransport(server), base_url="http://server")
    await CommandAgent(client, Credentials("dep1", "agent-1", "token-1"), None)._run_command(
        {"command_id": "cmd_1", "type": "docker.stop", "parameters": {"container": "web"}})

trio.run(run)
print(json.dumps(reports[-1]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=DEADLINE,
                          env=_environment("unix:///nonexistent/trioscope-test/docker.sock"), check=True)
    report, loaded = map(json.loads, done.stdout.splitlines())
    assert loaded == []
    assert report["status"] == "failed"
    assert report["error"] == ("the container engine cannot be reached: cannot connect to socket "
                               "/nonexistent/trioscope-test/docker.sock: No such file or directory")
