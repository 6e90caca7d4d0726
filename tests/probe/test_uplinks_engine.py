"""The host's network rates leave out its containers' traffic, against a real
engine (Podman, started by tests/tools/docker-engine.sh): bytes the host sends
to a container cross the bridge (``podman0``) and the container's veth, and no
NIC, so they are no traffic with the network (counted twice, before).

Skipped only if the engine cannot start here (tests/engine.py; the reason is shown)."""

from __future__ import annotations

import socket
import time

import docker

from tests.probe.engine import IMAGE, unique
from trioscope_probe._collect import HostCollector

PORT = 9000
SENT = 64 * 1024 * 1024


def _connect(address: str, deadline: float) -> socket.socket:
    """A connection to the container's sink, once it listens."""
    while True:
        try:
            return socket.create_connection((address, PORT), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise


def test_traffic_between_the_host_and_its_containers_is_not_host_network_traffic(
        docker_host: str, engine: docker.DockerClient) -> None:
    # The container outlives its nc: its veth and the bridge, gone with it, would take their counters along.
    sink = engine.containers.run(IMAGE, ["sh", "-c", f"nc -l -p {PORT} > /dev/null; sleep 600"], detach=True,
                                 name=unique("probe-uplinks-sink"))
    try:
        sink.reload()
        (network,) = sink.attrs["NetworkSettings"]["Networks"].values()  # the engine's default network
        collector = HostCollector()
        with _connect(network["IPAddress"], time.monotonic() + 30) as client:
            collector.collect()
            started = time.monotonic()  # (just after the reading the next rate is taken from)
            client.sendall(b"\0" * SENT)
            client.shutdown(socket.SHUT_WR)
            while client.recv(4096):  # nc closes once it has read it all (timeout: the connection's 5 s)
                pass
        host = collector.collect()
        seconds = time.monotonic() - started
        assert host.network_tx_bytes_per_sec * seconds < SENT / 4, host.network_tx_bytes_per_sec
    finally:
        sink.remove(force=True)
