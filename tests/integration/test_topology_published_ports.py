"""A connection to a container's published port, against a real engine and the
real probe: Podman's conmon listens on the host port itself (as Docker's
docker-proxy does), and the connection's edge goes to the process in the
container, not to conmon.

Skipped only if the engine cannot start here (tests/engine.py; the reason is shown)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import httpx
import pytest

from tests.free_port import free_port
from tests.integration.test_probe import probe
from tests.server_process import ServerProcess
from tests.waiting import eventually

IMAGE = "localhost/busybox:latest"


@pytest.fixture
def published(docker_host: str) -> Iterator[tuple[Any, int]]:
    """A web server in a container, its port 9000 published on a free host port."""
    client = docker.DockerClient(base_url=docker_host)
    port = free_port()
    started = client.containers.run(IMAGE, ["httpd", "-f", "-p", "9000"], detach=True,
                                    name=f"published-{uuid.uuid4().hex[:8]}", ports={"9000/tcp": port})
    try:
        started.reload()
        yield started, port
    finally:
        try:
            started.remove(force=True)
        except docker.errors.NotFound:
            pass
        client.close()


async def test_a_connection_to_a_published_port_reaches_the_process_in_the_container(
        docker_host: str, published: tuple[Any, int]) -> None:
    container, port = published
    server_pid = container.attrs["State"]["Pid"]
    with ServerProcess() as server, probe(server.base_url, "probe-ports", "--docker-host", docker_host), \
            socket.create_connection(("127.0.0.1", port), timeout=10):  # held open while the probe looks
        async with httpx.AsyncClient(timeout=30) as client:

            async def edge() -> tuple[dict[str, Any], dict[str, Any]] | None:
                topology = (await client.get(f"{server.base_url}/api/v1/query/topology",
                                             params={"view": "processes"})).json()["topology"]
                by_pid = {n["metadata"].get("pid"): n for n in topology["nodes"].values() if n["type"] == "process"}
                me = by_pid.get(os.getpid())
                if me is None:
                    return None
                reached = [topology["nodes"].get(e["target"]) for e in topology["edges"].values()
                           if e["source"] == me["id"]]
                found = next((n for n in reached if n is not None and n["metadata"].get("pid") == server_pid), None)
                return (found, topology) if found is not None else None

            found, topology = await eventually(edge, deadline=60)
            assert found["parent"] == f"container:{container.id}"
            me = next(n["id"] for n in topology["nodes"].values() if n["metadata"].get("pid") == os.getpid())
            holders = {topology["nodes"][e["target"]]["label"] for e in topology["edges"].values()
                       if e["source"] == me and e["target"] in topology["nodes"]}
            assert "conmon" not in holders, holders
