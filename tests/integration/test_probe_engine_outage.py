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

import contextlib
import socket
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import docker
import docker.errors
import httpx
import pytest

from tests.free_port import free_port
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
                listed = listing["nodes"][host["id"]]["metadata"]
                assert (listed["container_engine"], listed["container_engine_problem"]) == (
                    "unreachable", host["metadata"]["container_engine_problem"])

                engine.start()
                host, box = await eventually(lambda: both("reachable", "running"), DEADLINE)
                assert "container_engine_problem" not in host["metadata"] and "last_state" not in box["metadata"]
    finally:
        container.remove(force=True)
        client.close()


def _time(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


@contextlib.contextmanager
def _client(address: tuple[str, int]) -> Iterator[subprocess.Popen[str]]:
    """A process of its own holding a connection to ``address`` open (its
    edges told apart from the test's own), ended by its pid."""
    code = ("import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10); "
            "print('connected', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code, address[0], str(address[1])], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def test_an_outage_keeps_a_containers_address_and_published_port_also_across_a_server_restart(
        engine: ContainerEngine) -> None:
    """Connections to a kept container's own address and to its published
    port still reach its process while the engine is away (they went to no
    one, and to the engine's conmon holding the port), and a server restarted
    meanwhile shows the container as last known at once: the probe's reports
    repeat its last listing (``listed_at``). Before, the server alone kept
    the containers, and a restarted one had none until the engine was back."""
    docker_host = f"unix://{engine.socket}"
    client = docker.DockerClient(base_url=docker_host)
    # Free on every address: the engine publishes on all of them.
    published, name = free_port("0.0.0.0"), f"outage-web-{uuid.uuid4().hex[:8]}"
    try:
        # (A container whose start failed stays, created: removed by its name below.)
        container = client.containers.run(IMAGE, ["httpd", "-f", "-p", "9000"], detach=True, name=name,
                                          ports={"9000/tcp": published})
        container.reload()
        web_pid = container.attrs["State"]["Pid"]
        address = next(n["IPAddress"] for n in container.attrs["NetworkSettings"]["Networks"].values())
        with ServerProcess() as server, \
                probe(server.base_url, "probe-outage-web", "--docker-host", docker_host), \
                _client((address, 9000)) as by_address, _client(("127.0.0.1", published)) as by_port:
            async with httpx.AsyncClient(timeout=30) as api:
                async def reached(state: str, after: float = 0.0) -> dict[str, Any] | None:
                    """The container once it is in ``state``, its host reported
                    after ``after`` (a time) and both clients' connections go to
                    its web server's process."""
                    try:
                        topology = (await api.get(f"{server.base_url}/api/v1/query/topology",
                                                  params={"view": "processes"})).json()["topology"]
                        box = (await api.get(f"{server.base_url}/api/v1/query/nodes/container:{container.id}"))
                        host = (await api.get(f"{server.base_url}/api/v1/query/nodes/{host_id(socket.gethostname())}"))
                    except httpx.TransportError:  # the server restarting
                        return None
                    if box.status_code != 200 or box.json()["node"]["metadata"].get("state") != state \
                            or host.status_code != 200 or _time(host.json()["node"]["last_seen"]) <= after:
                        return None
                    nodes = topology["nodes"]
                    by_pid = {n["metadata"].get("pid"): n["id"] for n in nodes.values() if n["type"] == "process"}
                    targets = {pid: {nodes[e["target"]]["metadata"].get("pid") for e in topology["edges"].values()
                                     if e["source"] == by_pid.get(pid) and e["target"] in nodes}
                               for pid in (by_address.pid, by_port.pid)}
                    if all(targets[pid] == {web_pid} for pid in targets):
                        return {**box.json()["node"], "parent_of_web": nodes[by_pid[web_pid]]["parent"],
                                "host_seen": host.json()["node"]["last_seen"]}
                    return None

                seen = await eventually(lambda: reached("running"), DEADLINE)
                assert seen["parent_of_web"] == f"container:{container.id}"

                engine.stop()
                first = await eventually(lambda: reached("unknown"), DEADLINE)
                # Still so three reports later (the probe once repeated its last listing for one only).
                kept = await eventually(lambda: reached("unknown", _time(first["host_seen"]) + 3), DEADLINE)
                assert (kept["metadata"]["last_state"], kept["metadata"]["name"]) == ("running", container.name)
                assert kept["parent_of_web"] == f"container:{container.id}"

                # The server restarted on its port (the probe's --server) while the engine is away.
                port = urllib.parse.urlsplit(server.base_url).port
                server.stop()
                server.argv += ["--port", str(port)]
                server.start()
                again = await eventually(lambda: reached("unknown"), DEADLINE)
                assert again["metadata"]["last_state"] == "running" and again["metrics"] == {}
                assert again["last_seen"] == kept["last_seen"]  # when the engine last listed it
    finally:
        if engine.proc is None or engine.proc.poll() is not None:
            engine.start()  # to remove the container
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name).remove(force=True)
        client.close()
