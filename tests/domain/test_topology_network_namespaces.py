"""Sockets in network namespaces the report names (``Connection.netns``,
``NetworkInfo.netns``): a namespace other than the probe's has a loopback and
ports of its own, and the addresses of the containers in it only. A process
there without a container address (``--network none``, ``unshare -n``) never
takes the host's listeners; containers sharing one namespace (a pod, Docker's
or Podman's ``--network container:``) reach each other over its loopback and
share its published ports. A report that names none is read as before."""

from __future__ import annotations

from typing import Any

import pytest

from tests.domain.test_topology import T0, connect, edge_pairs, listen, published, report
from trioscope.domain.topology import TopologyGraph, View, build_partition, container_id, process_id, report_shape
from trioscope.wire import InvalidDocument, decode_report

HOST_NS, FOREIGN, SHARED = 4026531840, 4026532600, 4026532700
APP, SIDE = "c1" * 32, "c2" * 32


def in_ns(connection: dict, netns: int) -> dict:
    return {**connection, "netns": netns}


def host_report(*connections: dict, containers: list[dict] | None = None, processes: list[dict] | None = None,
                own: int | None = HOST_NS, t: float = T0) -> Any:
    """Host h1 (192.0.2.2): a server (30) on 127.0.0.1:18001 and 192.0.2.2:18001,
    its client (50), and ``connections`` after them (the foreign listener last:
    whichever was listed last took the port)."""
    extra: dict[str, Any] = {}
    sockets = [listen(18001, 30, "127.0.0.1"), listen(18001, 30, "192.0.2.2"), *connections]
    network: dict[str, Any] = {"connections": sockets}
    if own is not None:
        network["netns"] = own
    extra["network_info"] = network
    return report("a1", "h1", t=t, ips=("192.0.2.2",), containers=containers,
                  processes=[{"pid": 30, "name": "server"}, {"pid": 50, "name": "client"}, *(processes or [])], **extra)


def edges(*reports: Any) -> set[tuple[str, str]]:
    graph = TopologyGraph()
    for r in reports:
        graph.apply(r, T0)
    return edge_pairs(published(graph), View.PROCESSES)


SERVER, CLIENT, LONER = process_id("h1", 30), process_id("h1", 50), process_id("h1", 40)
HOST_CLIENTS = (connect("127.0.0.1", 18001, 50, 50001), connect("192.0.2.2", 18001, 50, 50002))


def test_an_unshared_process_does_not_take_the_hosts_loopback_and_address_listeners() -> None:
    # ``unshare -n`` nc -l 18001: a host process (no container) in a namespace of its own.
    found = edges(host_report(*HOST_CLIENTS, in_ns(listen(18001, 40), FOREIGN),
                              processes=[{"pid": 40, "name": "nc"}]))
    assert found == {(CLIENT, SERVER)}


def test_a_container_without_a_network_does_not_take_the_hosts_listeners() -> None:
    # ``--network none``: a container with no address, its process alone in its namespace.
    lone = "d0" * 32
    found = edges(host_report(*HOST_CLIENTS, in_ns(listen(18001, 40), FOREIGN),
                              containers=[{"id": lone, "name": "/isolated"}],
                              processes=[{"pid": 40, "name": "nc", "container_id": lone}]))
    assert found == {(CLIENT, SERVER)}


def test_loopback_in_another_namespace_reaches_its_own_listener_only() -> None:
    found = edges(host_report(in_ns(listen(18001, 40), FOREIGN),
                              in_ns(connect("127.0.0.1", 18001, 41, 50003), FOREIGN),
                              connect("127.0.0.1", 18001, 50, 50004),
                              processes=[{"pid": 40, "name": "nc"}, {"pid": 41, "name": "curl"}]))
    assert found == {(process_id("h1", 41), LONER), (CLIENT, SERVER)}


def test_a_host_client_with_the_port_a_container_listens_on_is_still_a_client() -> None:
    # The host client's ephemeral port is 40000, which a container listens on in its own namespace.
    bridged = "d1" * 32
    found = edges(
        host_report(in_ns(listen(40000, 40), FOREIGN), connect("192.0.2.9", 5432, 50, 40000),
                    containers=[{"id": bridged, "name": "/web", "networks": [{"name": "bridge",
                                                                             "ip_address": "10.88.0.4"}]}],
                    processes=[{"pid": 40, "name": "web", "container_id": bridged}]),
        report("a2", "db", ips=("192.0.2.9",), processes=[{"pid": 7, "name": "postgres"}],
               connections=[listen(5432, 7)]))
    assert found == {(CLIENT, process_id("db", 7))}


def test_a_wildcard_listener_of_another_namespace_is_on_its_containers_addresses() -> None:
    bridged = "d1" * 32
    found = edges(
        host_report(in_ns(listen(8080, 40), FOREIGN),
                    containers=[{"id": bridged, "name": "/web", "networks": [{"name": "bridge",
                                                                             "ip_address": "10.88.0.4"}]}],
                    processes=[{"pid": 40, "name": "web", "container_id": bridged}]),
        report("a2", "h2", ips=("192.0.2.7",), processes=[{"pid": 9, "name": "curl"}],
               connections=[connect("192.0.2.2", 8080, 9), connect("10.88.0.4", 8080, 9, 50009)]))
    # On the container's address; not on the host's (no port is published).
    assert found == {(process_id("h2", 9), LONER)}


def shared_namespace(own: int | None = HOST_NS) -> Any:
    """APP (10.88.0.5, publishes 8080 -> 80) and SIDE (no address) in one
    namespace: SIDE's nginx (61) serves on 0.0.0.0:80, APP's agent (60)
    calls it over loopback; a host client calls the published port."""
    def ns(connection: dict) -> dict:
        return in_ns(connection, SHARED) if own is not None else connection
    return host_report(
        listen(8080, None), ns(listen(80, 61)), ns(connect("127.0.0.1", 80, 60, 50010)),
        connect("192.0.2.2", 8080, 50, 50011),
        containers=[{"id": APP, "name": "/app", "networks": [{"name": "podman", "ip_address": "10.88.0.5"}],
                     "ports": [{"container_port": 80, "host_port": 8080}]},
                    {"id": SIDE, "name": "/side"}],
        processes=[{"pid": 60, "name": "agent", "container_id": APP}, {"pid": 61, "name": "nginx", "container_id": SIDE}],
        own=own)


def test_containers_sharing_a_namespace_share_its_loopback_and_published_ports() -> None:
    graph = TopologyGraph()
    graph.apply(shared_namespace(), T0)
    snap = published(graph)
    nginx = process_id("h1", 61)
    assert edge_pairs(snap, View.PROCESSES) == {(process_id("h1", 60), nginx), (CLIENT, nginx)}
    assert edge_pairs(snap, View.CONTAINERS) == {(container_id(APP), container_id(SIDE))}


def test_a_pods_infra_container_without_sockets_publishes_to_the_process_in_its_namespace() -> None:
    # Podman's pod: the infra container (catatonit, no socket) holds the
    # address and the published port; the app container's nginx serves.
    infra, app = "e1" * 32, "e2" * 32
    found = edges(host_report(
        listen(8080, None), in_ns(listen(80, 61), SHARED), connect("192.0.2.2", 8080, 50, 50012),
        containers=[{"id": infra, "name": "/pod-infra", "networks": [{"name": "podman", "ip_address": "10.88.0.6"}],
                     "ports": [{"container_port": 80, "host_port": 8080}]},
                    {"id": app, "name": "/pod-app"}],
        processes=[{"pid": 60, "name": "catatonit", "container_id": infra, "netns": SHARED},
                   {"pid": 61, "name": "nginx", "container_id": app, "netns": SHARED}]),
        report("a2", "h2", ips=("192.0.2.7",), processes=[{"pid": 9, "name": "curl"}],
               connections=[connect("10.88.0.6", 80, 9, 50013)]))
    nginx = process_id("h1", 61)
    assert found == {(CLIENT, nginx), (process_id("h2", 9), nginx)}  # the published port, the pod's address


def test_a_socket_of_no_listed_process_places_no_one() -> None:
    # Its pid is not among the processes: it is the host's node's, which stays in the host's network.
    found = edges(host_report(in_ns(listen(18001, 77), FOREIGN), connect("127.0.0.1", 18001, 50, 50014),
                              in_ns(connect("127.0.0.1", 9, 77, 50015), FOREIGN)))
    assert found == {(CLIENT, SERVER)}


def test_a_report_without_namespaces_is_read_as_before() -> None:
    # An older probe: the foreign listener, listed last, takes the host's
    # loopback port (what it cannot tell), not the address the server bound
    # itself (a socket bound to an address is the kernel's choice before one
    # on a wildcard), and the shared namespace is not seen as one.
    assert edges(host_report(*HOST_CLIENTS, in_ns(listen(18001, 40), FOREIGN),
                             processes=[{"pid": 40, "name": "nc"}], own=None)) == {(CLIENT, LONER), (CLIENT, SERVER)}
    graph = TopologyGraph()
    graph.apply(shared_namespace(own=None), T0)
    assert edge_pairs(published(graph), View.CONTAINERS) == set()


def test_namespaces_are_structure_and_stay_so_between_reports() -> None:
    first = shared_namespace()
    again = shared_namespace()
    assert report_shape(first) == report_shape(again) != report_shape(shared_namespace(own=None))
    moved = host_report(*HOST_CLIENTS, in_ns(listen(18001, 40), FOREIGN + 1), processes=[{"pid": 40, "name": "nc"}])
    stayed = host_report(*HOST_CLIENTS, in_ns(listen(18001, 40), FOREIGN), processes=[{"pid": 40, "name": "nc"}])
    assert report_shape(moved) != report_shape(stayed)
    # A report of the same shape is refreshed from the last, to the same edges.
    previous = build_partition(first, T0)
    refreshed = build_partition(again, T0 + 15, previous)
    assert refreshed.networks is previous.networks and refreshed.local_listeners is previous.local_listeners


@pytest.mark.parametrize("netns", [0, -1, 2**64, "4026531840", 1.5])
def test_a_namespace_is_a_positive_64_bit_integer(netns: Any) -> None:
    doc = {"agent_id": "a1", "timestamp": "2025-10-12T00:00:00Z",
           "network_info": {"connections": [{"local_port": 1, "netns": netns}]}}
    with pytest.raises(InvalidDocument):
        decode_report(doc)
    doc["network_info"] = {"netns": 2**64 - 1, "connections": [{"local_port": 1, "netns": HOST_NS}]}
    decoded = decode_report(doc)
    assert decoded.network_info is not None and decoded.network_info.netns == 2**64 - 1


def test_a_report_read_back_from_the_bus_keeps_its_namespaces() -> None:
    """Every replica but the receiving one reads a report back from the bus
    (its connections left as JSON): the probe's own namespace was dropped
    there, and the unshared process took the host's listeners again."""
    from trioscope.bus._envelope import pack_report, unpack_report

    sent = host_report(*HOST_CLIENTS, in_ns(listen(18001, 40), FOREIGN), processes=[{"pid": 40, "name": "nc"}])
    envelope, _ = pack_report(sent, T0, False)
    for deferred in (False, True):
        read = unpack_report(envelope, defer_connections=deferred, now=T0).report
        assert read.network_info is not None and read.network_info.netns == HOST_NS
        assert edges(read) == {(CLIENT, SERVER)}


def test_a_published_port_reaches_the_process_of_a_container_without_addresses() -> None:
    # A rootless engine's container (slirp4netns, pasta): the engine lists no
    # address; its nginx (40) listens on 0.0.0.0:80 in the container's namespace.
    found = edges(host_report(
        listen(8080, None), in_ns(listen(80, 40), FOREIGN), connect("192.0.2.2", 8080, 50, 50016),
        containers=[{"id": APP, "name": "/web", "ports": [{"container_port": 80, "host_port": 8080}]}],
        processes=[{"pid": 40, "name": "nginx", "container_id": APP}]))
    assert found == {(CLIENT, LONER)}


def test_a_report_that_says_no_namespace_keeps_the_shape_it_had_before_namespaces() -> None:
    # The digest of such a report as the version before namespaces made it:
    # replicas of both versions, side by side on one stream, agree on it.
    import hashlib
    from operator import attrgetter

    import orjson

    old = report("a1", "h1", ips=("192.0.2.2",), processes=[{"pid": 30, "name": "server"}],
                 connections=[listen(18001, 30)])
    process = attrgetter("pid", "ppid", "name", "cmdline", "user", "started_at", "container_id", "cgroup")
    connection = attrgetter("protocol", "local_address", "local_port", "remote_address", "remote_port", "state",
                            "pid")
    document = ("h1", ["192.0.2.2"], [], list(map(process, old.processes_info.processes)),
                list(map(connection, old.network_info.connections)))
    assert report_shape(old) == hashlib.sha256(orjson.dumps(document)).digest()[:16]
