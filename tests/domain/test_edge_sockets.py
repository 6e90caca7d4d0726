"""The sockets a probe sends (``edge_sockets``): what the server draws edges
and places nodes by, and nothing else: the server's view of a host is the
same from them as from every socket."""

from __future__ import annotations

from typing import Any

import attrs

from tests.domain.test_topology import T0, report
from trioscope.domain.agents import host_metrics
from trioscope.domain.topology import build_partition
from trioscope.wire import Connection, edge_sockets

OWN, OTHER = 4026531840, 4026532999


def _tcp(local: str, port: int, remote: str = "", remote_port: int = 0, state: str = "established",
         pid: int | None = None, netns: int | None = None) -> dict[str, Any]:
    return {"protocol": "tcp", "local_address": local, "local_port": port, "remote_address": remote,
            "remote_port": remote_port, "state": state, "pid": pid, **({"netns": netns} if netns else {})}


def _host() -> list[dict[str, Any]]:
    sockets = [_tcp("0.0.0.0", 80, state="listen", pid=10),
               _tcp("0.0.0.0", 80, state="listen", pid=30, netns=OTHER)]  # a container's own :80
    for n in range(40):  # a pool of 40 sockets from pid 20 to one endpoint, and their server sides
        sockets.append(_tcp("10.0.0.1", 40000 + n, "10.0.0.1", 80, pid=20))
        sockets.append(_tcp("10.0.0.1", 80, "10.0.0.1", 40000 + n, pid=10))
    sockets += [_tcp("10.0.0.1", 50000, "10.0.0.9", 5432, pid=20),  # another endpoint
                _tcp("10.0.0.1", 50001, "10.0.0.9", 5432, pid=21),  # another process
                _tcp("172.17.0.2", 80, "10.0.0.7", 41000, pid=31, netns=OTHER),  # the container's :80's side
                _tcp("10.0.0.1", 50002, "10.0.0.9", 443, state="time_wait", pid=22),  # pid 22's only socket
                _tcp("10.0.0.1", 50003, "10.0.0.9", 443, state="time_wait", pid=20),  # pid 20 placed already
                _tcp("172.17.0.2", 51000, "10.0.0.9", 6379, state="syn_sent", pid=32, netns=OTHER),
                {"protocol": "udp", "local_address": "0.0.0.0", "local_port": 53, "pid": 40}]
    return sockets


def test_the_server_sides_and_pools_go_and_every_listener_endpoint_and_place_stays() -> None:
    sockets = [Connection(**s) for s in _host()]
    kept = edge_sockets(sockets, OWN)
    shown = [(c.pid, c.local_port, c.remote_address, c.remote_port, c.state) for c in kept]
    assert len(sockets) == 89 and shown == [
        (10, 80, "", 0, "listen"), (30, 80, "", 0, "listen"), (20, 40000, "10.0.0.1", 80, "established"),
        (20, 50000, "10.0.0.9", 5432, "established"), (21, 50001, "10.0.0.9", 5432, "established"),
        (31, 80, "10.0.0.7", 41000, "established"),  # pid 31's only socket: it places the process
        (22, 50002, "10.0.0.9", 443, "time_wait"), (32, 51000, "10.0.0.9", 6379, "syn_sent"),
        (40, 53, "", 0, "")]


def test_the_server_builds_the_same_host_from_them_as_from_every_socket() -> None:
    processes = [{"pid": pid, "name": f"p{pid}", **({"netns": OTHER} if pid >= 30 else {})}
                 for pid in (10, 20, 21, 22, 30, 31, 32, 40)]
    whole = report("a", "h", ips=("10.0.0.1",), processes=processes, connections=_host())
    assert whole.network_info is not None
    whole = attrs.evolve(whole, network_info=attrs.evolve(whole.network_info, netns=OWN))
    cut = attrs.evolve(whole, network_info=attrs.evolve(
        whole.network_info, connections=edge_sockets(whole.network_info.connections, OWN)))
    full, sent = build_partition(whole, T0), build_partition(cut, T0)
    assert sent.outgoing == full.outgoing and len(full.outgoing) == 3
    assert (sent.listeners, sent.local_listeners, sent.networks) == (full.listeners, full.local_listeners,
                                                                     full.networks)
    assert sent.nodes == full.nodes


def test_the_hosts_connections_metric_counts_every_socket_the_probe_found() -> None:
    whole = report("a", "h", connections=_host())
    assert whole.network_info is not None
    cut = attrs.evolve(whole, network_info=attrs.evolve(
        whole.network_info, connections=edge_sockets(whole.network_info.connections, None), sockets=89))
    assert host_metrics(whole)["connections"] == host_metrics(cut)["connections"] == 89.0



def test_a_process_in_two_other_namespaces_is_placed_by_its_first_socket_as_before() -> None:
    """The server places a process by the first of its sockets outside the
    probe's namespace: appended after the others, the socket that placed it
    came after one in another namespace (a reviewer's case)."""
    sockets = [_tcp("0.0.0.0", 80, state="listen", pid=11, netns=OTHER),
               _tcp("10.1.0.2", 80, "10.1.0.9", 40000, pid=10, netns=OTHER),  # accepted: dropped, but placed pid 10
               _tcp("0.0.0.0", 81, state="listen", pid=10, netns=OTHER + 1)]
    whole = report("a", "h", processes=[{"pid": 10}, {"pid": 11}], connections=sockets)
    assert whole.network_info is not None
    whole = attrs.evolve(whole, network_info=attrs.evolve(whole.network_info, netns=OWN))
    cut = attrs.evolve(whole, network_info=attrs.evolve(
        whole.network_info, connections=edge_sockets(whole.network_info.connections, OWN)))
    assert build_partition(cut, T0).networks == build_partition(whole, T0).networks
