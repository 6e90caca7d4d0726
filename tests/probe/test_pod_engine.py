"""A Podman pod with a published port, against a real engine (Podman, started
by tests/tools/docker-engine.sh): the pod's conmon holds the port on the host
in a cgroup below the pod's (``/libpod_parent/<pod id>/conmon``), which is no
container; a host client's connection to the port reaches the app's process.

Skipped only if the engine cannot start here (tests/engine.py; the reason is shown)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import trio

from tests.free_port import free_port
from tests.probe.engine import IMAGE, unique
from tests.waiting import eventually
from trioscope.domain.topology import NodeKind, TopologyGraph, View, container_id, process_id
from trioscope.wire import Report
from trioscope_probe._collect import ReportCollector
from trioscope_probe._docker import ContainerCollector

PORT = 8080
LIBPOD = "http://d/v4.0.0/libpod"
"""Podman's own API (pods are not in the Docker API), on the engine's socket."""


@contextmanager
def _pod(docker_host: str, host_port: int) -> Iterator[tuple[str, str]]:
    """``podman pod create -p host_port:PORT`` and an app listening on PORT in
    it, started; (pod id, app container id). The pod is removed after."""
    transport = httpx.HTTPTransport(uds=docker_host.removeprefix("unix://"))
    with httpx.Client(transport=transport, timeout=60) as api:
        name = unique("probe-pod")
        created = api.post(f"{LIBPOD}/pods/create", json={
            "name": name, "portmappings": [{"host_port": host_port, "container_port": PORT, "protocol": "tcp"}]})
        assert created.status_code == 201, created.text
        try:
            app = api.post(f"{LIBPOD}/containers/create", json={
                "name": f"{name}-app", "image": IMAGE, "pod": name,
                "command": ["nc", "-ll", "-p", str(PORT), "-e", "/bin/cat"]})
            assert app.status_code == 201, app.text
            started = api.post(f"{LIBPOD}/pods/{name}/start")
            assert started.status_code == 200, started.text
            yield created.json()["Id"], app.json()["Id"]
        finally:
            api.delete(f"{LIBPOD}/pods/{name}", params={"force": "true"})


def _connect(host_port: int) -> socket.socket | None:
    """A connection to the published port, once the app listens behind it."""
    client = socket.socket()
    try:
        client.settimeout(5)
        client.connect(("127.0.0.1", host_port))
        client.sendall(b"ping\n")
        if client.recv(5) == b"ping\n":  # the app's cat answered: the connection reached it
            return client
    except OSError:
        pass
    client.close()
    return None


async def test_a_host_client_of_a_pods_published_port_reaches_the_app_not_conmon(docker_host: str) -> None:
    host_port = free_port()
    with _pod(docker_host, host_port) as (pod, app):
        client = await eventually(lambda: trio.to_thread.run_sync(_connect, host_port))
        try:
            collector = ReportCollector("probe-pod", containers=ContainerCollector(docker_host))
            mine = client.getsockname()[1]

            async def seen() -> tuple[Report, int] | None:
                report = await trio.to_thread.run_sync(collector.collect)
                assert report.processes_info is not None and report.network_info is not None
                nc = min((p.pid for p in report.processes_info.processes if p.container_id == app and p.name == "nc"),
                         default=None)
                out = [c for c in report.network_info.connections
                       if c.pid == os.getpid() and c.local_port == mine and c.state == "established"]
                return (report, nc) if nc and out else None

            report, nc = await eventually(seen)
        finally:
            client.close()
        assert report.processes_info is not None
        assert not [p for p in report.processes_info.processes if p.container_id == pod]  # conmon: no container

        graph = TopologyGraph()
        graph.apply(report, report.timestamp.timestamp())
        snapshot, _ = graph.publish(report.timestamp.timestamp())
        assert snapshot.node(container_id(pod)) is None
        inferred: list[Any] = [n for n in snapshot.nodes(View.CONTAINERS)
                               if n.kind is NodeKind.CONTAINER and n.metadata.get("inferred") and pod in n.id]
        assert not inferred
        host = report.host_name
        assert (process_id(host, os.getpid()), process_id(host, nc)) in {
            (e.source, e.target) for e in snapshot.edges(View.PROCESSES)}
