"""What the metrics API tests share: an enrolled agent of a fresh tenant that
writes metrics, a user of that tenant that reads them, and a VictoriaMetrics
of their own (installed from Debian when missing)."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import httpx

from tests.free_port import free_port
from tests.process_end import end
from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent
from tests.tools_path import tool_path

_ids = itertools.count(1)


def victoria_metrics_binary() -> str:
    """Debian's victoria-metrics, installed with apt-get first if the machine lacks
    it (``tests/tools/victoria-metrics.sh``); skipped only where it cannot be installed."""
    return tool_path("victoria-metrics.sh")


@attrs.define
class Tenant:
    """A user and an enrolled agent of one fresh tenant."""

    server: ServerProcess
    name: str
    user: str
    agent: StatusAgent

    def auth(self, role: str = "VIEWER") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.user_token(self.user, self.name, role)}"}

    async def write(self, client: httpx.AsyncClient, body: bytes, content_type: str = "text/plain",
                    query: str = "") -> httpx.Response:
        return await client.post(f"{self.server.base_url}/api/v1/metrics/write{query}", content=body,
                                 headers={**self.agent.headers(body), "Content-Type": content_type})

    async def read(self, client: httpx.AsyncClient, path: str, **params: Any) -> httpx.Response:
        return await client.get(f"{self.server.base_url}{path}", params=params, headers=self.auth())


async def new_tenant(client: httpx.AsyncClient, server: ServerProcess) -> Tenant:
    number = next(_ids)
    tenant, user = f"tenant-{number}", f"user-{number}"
    headers = {"Authorization": f"Bearer {server.user_token(user, tenant, 'OPERATOR')}"}
    created = await client.post(f"{server.base_url}/api/v1/users/{user}/deployments", json={}, headers=headers)
    assert created.status_code == 201, created.text
    deployment = created.json()
    enrolled = await client.post(f"{server.base_url}/api/v1/agent/register", json={
        "deployment_hash": deployment["deployment_hash"], "enrollment_token": deployment["enrollment_token"],
        "public_key": "-", "capabilities": [], "system_info": {}, "agent_version": "0.2.1"})
    assert enrolled.status_code == 201, enrolled.text
    body = enrolled.json()
    return Tenant(server, tenant, user,
                  StatusAgent(server.base_url, body["agent_id"], body["agent_token"], deployment["deployment_hash"]))


@contextmanager
def victoria_metrics() -> Iterator[str]:
    """A VictoriaMetrics of its own (Debian's ``victoria-metrics``) on a free
    port, with its data in a temporary directory; yields its base URL. Stopped
    by its pid."""
    binary = victoria_metrics_binary()
    data = tempfile.mkdtemp(prefix="trioscope-vm-")
    port = free_port()
    # latencyOffset 0: the newest points are answered at once (by default VictoriaMetrics
    # hides the last 30 s, which a test that writes then reads would wait out).
    process = subprocess.Popen([binary, f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}",
                                "-retentionPeriod=1", "-search.latencyOffset=0s", "-search.disableCache",
                                "-loggerLevel=ERROR"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client() as client:
            for _ in range(300):
                try:
                    if client.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None:
                    raise RuntimeError(f"victoria-metrics exited with {process.returncode}")
                _pause(process)
            else:
                raise RuntimeError("victoria-metrics did not answer /health within 30 s")
        yield url
    finally:
        end(process)
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def metrics_server(backend: str) -> Iterator[ServerProcess]:
    """A server whose metrics are kept by ``backend``: ``embedded`` (its own
    engine) or ``victoriametrics`` (a VictoriaMetrics of its own at --metrics-url)."""
    if backend == "embedded":
        with ServerProcess() as process:
            yield process
    else:
        with victoria_metrics() as url, ServerProcess(["--metrics-url", url]) as process:
            yield process


BACKENDS = ("embedded", "victoriametrics")
"""The ``backend`` names ``metrics_server`` takes."""


def _pause(process: subprocess.Popen[bytes]) -> None:
    """Wait a tenth of a second for the process (it should not end), not a bare sleep."""
    try:
        process.wait(timeout=0.1)
    except subprocess.TimeoutExpired:
        pass
