"""Connections between containers on a bridge network, against a real engine
(Podman, started by tests/tools/docker-engine.sh): each container talks in a
network namespace of its own, which the host's /proc/net tables do not show.

Skipped only if the engine cannot start here (tests/engine.py; the reason is shown)."""

from __future__ import annotations

from typing import Any

import docker
import trio

from tests.probe.engine import IMAGE, unique
from tests.waiting import eventually
from trioscope.domain.topology import TopologyGraph, View, container_id, process_id
from trioscope.wire import Connection, Report
from trioscope_probe._collect import ReportCollector
from trioscope_probe._docker import ContainerCollector

PORT = 9000


def _address(container: Any) -> str:
    container.reload()
    (network,) = container.attrs["NetworkSettings"]["Networks"].values()  # the engine's default network
    return str(network["IPAddress"])


def _nc(report: Report, container: Any) -> int | None:
    """The pid of the container's first ``nc`` (the listener, not the worker it forks)."""
    assert report.processes_info is not None
    return min((p.pid for p in report.processes_info.processes
                if p.container_id == container.id and p.name == "nc"), default=None)


async def test_a_connection_between_two_containers_on_a_bridge_network_is_reported(
        docker_host: str, engine: docker.DockerClient) -> None:
    listener = engine.containers.run(IMAGE, ["nc", "-ll", "-p", str(PORT), "-e", "/bin/cat"], detach=True,
                                     name=unique("probe-netns-listener"))
    try:
        listener_ip = _address(listener)
        connecting = engine.containers.run(IMAGE, ["sh", "-c", f"sleep 100000 | nc {listener_ip} {PORT}"],
                                           detach=True, name=unique("probe-netns-client"))
        try:
            client_ip = _address(connecting)
            collector = ReportCollector("probe-netns", containers=ContainerCollector(docker_host))

            async def connected() -> tuple[Report, Connection, Connection] | None:
                # Once the client's nc has connected (it may still be starting).
                report = await trio.to_thread.run_sync(collector.collect)
                assert report.network_info is not None
                server, caller = _nc(report, listener), _nc(report, connecting)
                listening = [c for c in report.network_info.connections
                             if c.pid == server and (c.local_port, c.state) == (PORT, "listen")]
                out = [c for c in report.network_info.connections if c.pid == caller and c.state == "established"]
                return (report, listening[0], out[0]) if server and caller and listening and out else None

            report, listening, out = await eventually(connected)
            assert (out.protocol, out.local_address, out.remote_address, out.remote_port) == (
                "tcp", client_ip, listener_ip, PORT)
            assert listening.local_address in ("0.0.0.0", "::", listener_ip)  # busybox nc: every address

            # The server resolves it: the listener is reachable on its container's
            # address, and the client's process connects to the listener's.
            graph = TopologyGraph()
            graph.apply(report, report.timestamp.timestamp())
            snapshot, _ = graph.publish(report.timestamp.timestamp())
            host = report.host_name
            assert (process_id(host, out.pid), process_id(host, listening.pid)) in {
                (e.source, e.target) for e in snapshot.edges(View.PROCESSES)}
            assert (container_id(connecting.id), container_id(listener.id)) in {
                (e.source, e.target) for e in snapshot.edges(View.CONTAINERS)}
        finally:
            connecting.remove(force=True)
    finally:
        listener.remove(force=True)
