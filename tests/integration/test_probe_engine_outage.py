"""A container engine that stops while the probe reports from it (Podman's
API service, ended by its process id as a daemon stops; its containers run
on): the host node says the engine is unreachable and why, its containers
stay, in state unknown, and all is as before once the engine is back.
Before, the containers vanished, and ``docker_info`` without them looked like
a host whose containers were all removed.

An engine of the test's own (tests/engine.py), not the session's
``docker_host``, which other tests use meanwhile. Skipped only if the engine
cannot start here."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest

from tests.engine import ContainerEngine, EngineNotInstallable
from tests.integration.test_probe import probe
from tests.server_process import ServerProcess
from tests.waiting import eventually
from trioscope.domain.topology import host_id

IMAGE = "localhost/busybox:latest"
DEADLINE = 60.0


@pytest.fixture
def engine() -> Iterator[ContainerEngine]:
    engine = ContainerEngine()
    try:
        engine.__enter__()
    except EngineNotInstallable as exc:
        pytest.skip(str(exc))
    try:
        yield engine
    finally:
        engine.__exit__()


async def test_an_engine_that_stops_shows_on_its_host_and_its_containers_stay_unknown_until_it_is_back(
        engine: ContainerEngine) -> None:
    docker_host = f"unix://{engine.socket}"
    client = docker.DockerClient(base_url=docker_host)
    container = client.containers.run(IMAGE, ["sleep", "600"], detach=True,
                                      name=f"outage-test-{uuid.uuid4().hex[:8]}")
    try:
        with ServerProcess() as server, probe(server.base_url, "probe-outage", "--docker-host", docker_host):
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as api:
                async def node(node_id: str) -> dict[str, Any] | None:
                    response = await api.get(f"/api/v1/query/nodes/{node_id}")
                    if response.status_code != 200:
                        return None
                    body = response.json()
                    return body.get("node", body)  # type: ignore[no-any-return]

                async def both(engine_state: str, container_state: str) -> tuple[dict[str, Any], dict[str, Any]]:
                    """The host and the container, once they are in these states."""
                    host = await node(host_id(socket.gethostname()))
                    box = await node(f"container:{container.id}")
                    if host and box and host["metadata"].get("container_engine") == engine_state \
                            and box["metadata"]["state"] == container_state:
                        return host, box
                    return None  # type: ignore[return-value]  # eventually's "not yet"

                host, box = await eventually(lambda: both("reachable", "running"), DEADLINE)
                assert "container_engine_problem" not in host["metadata"]

                engine.stop()
                host, box = await eventually(lambda: both("unreachable", "unknown"), DEADLINE)
                assert str(engine.socket) in host["metadata"]["container_engine_problem"]
                assert (box["metadata"]["last_state"], box["metadata"]["name"]) == ("running", container.name)
                assert box["metrics"] == {} and "inferred" not in box["metadata"]
                listing = (await api.get("/api/v1/query/topology", params={"view": "hosts"})).json()["topology"]
                assert listing["nodes"][host["id"]]["metadata"]["container_engine"] == "unreachable"

                engine.start()
                host, box = await eventually(lambda: both("reachable", "running"), DEADLINE)
                assert "container_engine_problem" not in host["metadata"] and "last_state" not in box["metadata"]
    finally:
        container.remove(force=True)
        client.close()
