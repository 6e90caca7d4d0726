"""Containers in one network namespace (``--network container:``, as a
Podman pod's or Compose's ``network_mode: service:``), against a real engine,
the real probe and a real server: the first publishes the port and runs no
server (as a pod's infra container), the second serves in the namespace the
first owns, a third (a sidecar) calls it over the namespace's loopback. The
sidecar's connection reaches the server (Podman lists the namespace's
address for each of them: before the server knew namespaces, each was taken
for a network of its own), and so does a host client of the published port,
not the container that lists the port.

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


def _remove(container: Any) -> None:
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass


@pytest.fixture
def shared(docker_host: str) -> Iterator[tuple[Any, Any, Any, int]]:
    """(owner, server, sidecar, host port): the owner publishes its port 9000
    and sleeps; the server, in the owner's namespace, echoes on 9000; the
    sidecar, there too, holds a connection to 127.0.0.1:9000."""
    client = docker.DockerClient(base_url=docker_host)
    port = free_port()
    started: list[Any] = []
    try:
        owner = client.containers.run(IMAGE, ["sleep", "100000"], detach=True, name=f"ns-owner-{uuid.uuid4().hex[:8]}",
                                      ports={"9000/tcp": port})
        started.append(owner)
        joined = f"container:{owner.id}"
        server = client.containers.run(IMAGE, ["nc", "-ll", "-p", "9000", "-e", "/bin/cat"], detach=True,
                                       name=f"ns-server-{uuid.uuid4().hex[:8]}", network_mode=joined)
        started.append(server)
        # Once the server listens (port 9000 is 2328 in the namespace's tables), which it may not yet.
        call = ("until grep -q ':2328 [0-9A-F]*:[0-9A-F]* 0A' /proc/net/tcp /proc/net/tcp6; do sleep 0.1; done; "
                "sleep 100000 | nc 127.0.0.1 9000")
        sidecar = client.containers.run(IMAGE, ["sh", "-c", call], detach=True,
                                        name=f"ns-sidecar-{uuid.uuid4().hex[:8]}", network_mode=joined)
        started.append(sidecar)
        for container in started:
            container.reload()
        yield owner, server, sidecar, port
    finally:
        for container in reversed(started):
            _remove(container)
        client.close()


async def test_a_published_port_reaches_the_server_of_the_namespace_whichever_container_it_is_in(
        docker_host: str, shared: tuple[Any, Any, Any, int]) -> None:
    _, server, sidecar, port = shared
    server_pid = server.attrs["State"]["Pid"]
    # Connected before the probe starts (and held open while it looks): its first report has the connection.
    with socket.create_connection(("127.0.0.1", port), timeout=10), ServerProcess() as trioscope, \
            probe(trioscope.base_url, "probe-shared-ns", "--docker-host", docker_host):
        async with httpx.AsyncClient(timeout=30) as client:

            async def reported() -> dict[str, Any] | None:
                # The sidecar's nc connected (it may still be starting): the
                # report that lists it resolved the connections (nodes and
                # edges are merged at once).
                topology = (await client.get(f"{trioscope.base_url}/api/v1/query/topology",
                                             params={"view": "processes"})).json()["topology"]
                callers = [n for n in topology["nodes"].values() if n["type"] == "process" and n["label"] == "nc"
                           and n["parent"] == f"container:{sidecar.id}"]
                pids = {n["metadata"].get("pid") for n in topology["nodes"].values() if n["type"] == "process"}
                return topology if callers and {server_pid, os.getpid()} <= pids else None

            topology = await eventually(reported, deadline=60)
            nodes = topology["nodes"]

            def reached_from(source: str) -> set[int]:
                return {nodes[e["target"]]["metadata"].get("pid") for e in topology["edges"].values()
                        if e["source"] == source and e["target"] in nodes}

            me = next(n["id"] for n in nodes.values() if n["type"] == "process" and n["metadata"]["pid"] == os.getpid())
            assert server_pid in reached_from(me), (reached_from(me), f"the server's container: {server.id}")
            callers = {n["id"] for n in nodes.values() if n["parent"] == f"container:{sidecar.id}" and n["label"] == "nc"}
            assert any(server_pid in reached_from(caller) for caller in callers), "the sidecar's loopback call"
