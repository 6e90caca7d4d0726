"""The probe against a real Docker-API engine (Podman, started by
tests/tools/docker-engine.sh): containers appear with their ids, names,
images and states, processes inside them belong to them, and a pause shows.

Skipped only if the engine cannot start here (tests/engine.py; the reason is shown)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest

from tests.integration.test_commands import Operator
from tests.integration.test_probe import probe
from tests.server_process import ServerProcess
from tests.waiting import eventually
from trioscope.domain.topology import container_id, node_scope

IMAGE = "localhost/busybox:latest"


@pytest.fixture
def container(docker_host: str) -> Iterator[Any]:
    client = docker.DockerClient(base_url=docker_host)
    started = client.containers.run(IMAGE, ["sleep", "600"], detach=True, name=f"probe-test-{uuid.uuid4().hex[:8]}",
                                    labels={"com.docker.compose.project": "shop", "com.docker.compose.service": "web"})
    try:
        started.reload()
        yield started
    finally:
        try:
            started.remove(force=True)
        except docker.errors.NotFound:
            pass  # a test removed it through the probe
        client.close()


async def test_containers_and_their_processes_appear_and_a_pause_shows(docker_host: str, container: Any) -> None:
    with ServerProcess() as server, probe(server.base_url, "probe-engine", "--docker-host", docker_host):
        async with httpx.AsyncClient() as client:
            node_id = f"container:{container.id}"

            async def node(state: str) -> dict[str, Any] | None:
                response = await client.get(f"{server.base_url}/api/v1/query/nodes/{node_id}")
                if response.status_code != 200:
                    return None
                body = response.json()
                found = body.get("node", body)
                return found if found["metadata"]["state"] == state else None

            shown = await eventually(lambda: node("running"))
            meta = shown["metadata"]
            assert (meta["name"], meta["image"], meta["container_id"]) == (container.name, IMAGE, container.id)
            assert meta["labels"]["com.docker.compose.service"] == "web"

            pid = container.attrs["State"]["Pid"]

            async def sleeper() -> dict[str, Any] | None:
                topology = (await client.get(f"{server.base_url}/api/v1/query/topology",
                                             params={"view": "processes"})).json()["topology"]
                return next((n for n in topology["nodes"].values()
                             if n["type"] == "process" and n.get("metadata", {}).get("pid") == pid), None)

            process = await eventually(sleeper)
            assert (process["parent"], process["label"]) == (node_id, "sleep")

            container.pause()
            await eventually(lambda: node("paused"))
            container.unpause()
            await eventually(lambda: node("running"))


@asynccontextmanager
async def probe_as_agent(docker_host: str, state_dir: Path, *extra: str
                         ) -> AsyncIterator[tuple[ServerProcess, httpx.AsyncClient, Operator, str]]:
    """A server, an operator with a deployment, and a probe enrolled as that
    deployment's command agent (credentials kept in ``state_dir``)."""
    with ServerProcess() as server:
        async with httpx.AsyncClient(timeout=30) as client:
            operator = Operator(server, "ops", "acme")
            deployment = await operator.create_deployment(client)
            hash_ = deployment["deployment_hash"]
            with probe(server.base_url, "probe-agent", "--docker-host", docker_host, "--deployment-hash", hash_,
                       "--enrollment-token", deployment["enrollment_token"], "--state-dir", str(state_dir), *extra):
                yield server, client, operator, hash_


async def test_container_controls_run_end_to_end_through_the_probe(docker_host: str, container: Any,
                                                                     tmp_path: Path) -> None:
    allow = "docker.stop,docker.start,docker.restart,docker.logs,docker.exec,docker.inspect"
    async with probe_as_agent(docker_host, tmp_path, "--allow", allow) as (_, client, operator, hash_):
        async def run(kind: str, **parameters: Any) -> dict[str, Any]:
            created = await operator.command(client, hash_, type=kind,
                                             parameters={"container": container.id, **parameters},
                                             timeout_seconds=60)

            async def finished() -> dict[str, Any] | None:
                command = await operator.get(client, hash_, created["command_id"])
                return command if command["status"] in ("completed", "failed") else None

            return await eventually(finished, deadline=60)

        stopped = await run("docker.stop", timeout=1)
        assert stopped["status"] == "completed", stopped
        assert [h["status"] for h in stopped["history"]] == ["queued", "sent", "executing", "completed"]
        container.reload()
        assert container.status == "exited" and stopped["result"]["state"] == "exited"

        started = await run("docker.start")
        container.reload()
        assert started["status"] == "completed" and container.status == "running"

        restarted = await run("docker.restart", timeout=1)
        assert restarted["status"] == "completed" and restarted["result"]["state"] == "running"

        executed = await run("docker.exec", argv=["echo", "hello from the container"])
        assert executed["status"] == "completed", executed
        assert executed["result"]["exit_code"] == 0
        assert executed["result"]["output"].strip() == "hello from the container"

        # Past its time the exec's process is killed: left running, it held an engine thread
        # of the probe until it ended (eight of them, and no command ran any more).
        slow = await run("docker.exec", argv=["sleep", "100000"], timeout=1)
        assert slow["status"] == "failed" and "timed out after 1s; its process (pid" in slow["error"], slow
        assert "was killed" in slow["error"], slow
        assert not any("100000" in " ".join(row) for row in container.top()["Processes"]), container.top()

        logs = await run("docker.logs", tail=10)
        assert logs["status"] == "completed" and logs["result"]["truncated"] is False

        refused = await run("docker.remove", force=True)
        assert refused["status"] == "failed" and "not allowed" in refused["error"]
        unknown = await run("docker.explode")
        assert unknown["status"] == "failed" and "unknown command type" in unknown["error"]
        bad = await run("docker.exec", argv="rm -rf /")
        assert bad["status"] == "failed" and "argv" in bad["error"]
        assert (tmp_path / "credentials.json").stat().st_mode & 0o777 == 0o600


async def test_controls_on_a_container_node_reach_the_engine(docker_host: str, container: Any,
                                                             tmp_path: Path) -> None:
    async with probe_as_agent(docker_host, tmp_path) as (server, client, operator, hash_):
        node_id = container_id(container.id, node_scope(operator.tenant))  # enrolled: its tenant's scope

        async def node_in(state: str) -> dict[str, Any] | None:
            response = await client.get(f"{server.base_url}/api/v1/query/nodes/{node_id}")
            if response.status_code != 200:
                return None
            found = response.json().get("node", response.json())
            return found if found["metadata"]["state"] == state else None

        running = await eventually(lambda: node_in("running"))
        assert "stop" in {c["id"] for c in running["metadata"]["controls"]}
        url = f"{server.base_url}/api/v1/query/nodes/{node_id}/controls"

        outsider = Operator(server, "ops", "other-tenant")
        hidden = await client.post(f"{url}/stop", headers=outsider.auth)
        assert hidden.status_code == 404
        viewer = Operator(server, "ops", "acme", "VIEWER")
        assert (await client.post(f"{url}/stop", headers=viewer.auth)).status_code == 403
        unavailable = await client.post(f"{url}/start", headers=operator.auth)
        assert unavailable.status_code == 409 and "stop" in unavailable.json()["error"]["details"]["available"]

        response = await client.post(f"{url}/stop", json={"parameters": {"timeout": 1}}, headers=operator.auth)
        assert response.status_code == 202, server.stderr()[-3000:]
        created = response.json()
        assert created["type"] == "docker.stop" and created["deployment_hash"] == hash_

        async def completed() -> dict[str, Any] | None:
            command = await operator.get(client, hash_, created["command_id"])
            return command if command["status"] == "completed" else None

        await eventually(completed, deadline=60)
        exited = await eventually(lambda: node_in("exited"))
        assert "start" in {c["id"] for c in exited["metadata"]["controls"]}
        container.reload()
        assert container.status == "exited"

        removal = await client.post(f"{url}/remove", headers=operator.auth)
        assert removal.status_code == 202
        command_id = removal.json()["command_id"]

        async def removed() -> dict[str, Any] | None:
            command = await operator.get(client, hash_, command_id)
            return command if command["status"] == "completed" else None

        assert (await eventually(removed, deadline=60))["result"]["state"] == "removed"
        with pytest.raises(docker.errors.NotFound):
            container.reload()
