"""The probe against a real Docker-API engine (Podman, started by
tests/tools/docker-engine.sh): containers appear with their ids, names,
images and states, processes inside them belong to them, and a pause shows.

Skipped only if the engine script itself fails (the reason is printed)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.integration.test_probe import eventually, probe
from tests.server_process import ServerProcess

ENGINE_SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "docker-engine.sh"
IMAGE = "localhost/busybox:latest"


@pytest.fixture(scope="module")
def docker_host() -> str:
    result = subprocess.run(["bash", str(ENGINE_SCRIPT)], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        reason = f"the container engine script failed ({result.returncode}): {result.stderr.strip()[-500:]}"
        print(reason)
        pytest.skip(reason)
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def container(docker_host: str) -> Iterator[Any]:
    client = docker.DockerClient(base_url=docker_host)
    started = client.containers.run(IMAGE, ["sleep", "600"], detach=True, name=f"probe-test-{uuid.uuid4().hex[:8]}",
                                    labels={"com.docker.compose.project": "shop", "com.docker.compose.service": "web"})
    try:
        started.reload()
        yield started
    finally:
        started.remove(force=True)
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
