"""Loopback is per network namespace: a connection to 127.0.0.1 from a process
in a container with a network of its own (or in a pod, whose containers share
its sandbox's) reaches a socket in that network, never one of the host's or of
another container's; the host's reach the host's (and published ports)."""

from __future__ import annotations

from tests.domain.test_topology import T0, connect, edge_pairs, listen, published, report
from trioscope.domain.topology import TopologyGraph, View, container_id, process_id

A, B = "5" * 64, "6" * 64


def host_with_two_containers(*host_sockets: dict, client_pid: int = 11) -> TopologyGraph:
    """Host s9: container A (api 10 listening on 8080, a client ``client_pid``),
    container B (other-api 20 listening on 8080), host process 30."""
    graph = TopologyGraph()
    graph.apply(report("s9", "s9", ips=("10.9.0.1",), containers=[
        {"id": A, "name": "/a", "networks": [{"name": "bridge", "ip_address": "172.17.0.2"}]},
        {"id": B, "name": "/b", "networks": [{"name": "bridge", "ip_address": "172.17.0.3"}]},
    ], processes=[
        {"pid": 10, "name": "api", "container_id": A}, {"pid": 11, "name": "healthcheck", "container_id": A},
        {"pid": 20, "name": "other-api", "container_id": B}, {"pid": 30, "name": "node-exporter"},
    ], connections=[listen(8080, 10), listen(8080, 20), connect("127.0.0.1", 8080, client_pid), *host_sockets]), T0)
    return graph


def test_loopback_in_a_container_reaches_its_own_listener_not_the_hosts():
    graph = host_with_two_containers(listen(8080, 30, "127.0.0.1"))
    snap = published(graph)
    assert edge_pairs(snap, View.PROCESSES) == {(process_id("s9", 11), process_id("s9", 10))}
    assert edge_pairs(snap, View.CONTAINERS) == set()  # within A


def test_loopback_in_a_container_does_not_reach_another_containers_listener():
    graph = host_with_two_containers()
    snap = published(graph)
    assert edge_pairs(snap, View.PROCESSES) == {(process_id("s9", 11), process_id("s9", 10))}
    assert edge_pairs(snap, View.CONTAINERS) == set()


def test_loopback_on_the_host_reaches_the_hosts_listener_only():
    graph = host_with_two_containers(listen(8080, 30, "127.0.0.1"), client_pid=30)
    assert edge_pairs(published(graph), View.PROCESSES) == set()  # node-exporter to itself: no edge
    graph = host_with_two_containers(listen(9100, 30, "127.0.0.1"), client_pid=30)
    assert edge_pairs(published(graph), View.PROCESSES) == set()  # 8080 is in A's and B's networks only


def test_containers_of_a_pod_share_its_loopback():
    sandbox, app, sidecar = "71" * 32, "72" * 32, "73" * 32
    labels = {"io.kubernetes.pod.name": "api-1", "io.kubernetes.pod.namespace": "prod", "io.kubernetes.pod.uid": "u1"}
    graph = TopologyGraph()
    graph.apply(report("k1", "k1", ips=("10.10.0.1",), containers=[
        {"id": sandbox, "name": "/k8s_POD_api-1", "labels": labels,
         "networks": [{"name": "pods", "ip_address": "10.244.1.5"}]},
        {"id": app, "name": "/k8s_app_api-1", "labels": labels},
        {"id": sidecar, "name": "/k8s_proxy_api-1", "labels": labels},
    ], processes=[
        {"pid": 10, "name": "api", "container_id": app}, {"pid": 12, "name": "envoy", "container_id": sidecar},
        {"pid": 40, "name": "kubelet"},
    ], connections=[listen(9000, 10, "127.0.0.1"), listen(9000, 40, "127.0.0.1"), connect("127.0.0.1", 9000, 12)]), T0)
    snap = published(graph)
    assert edge_pairs(snap, View.PROCESSES) == {(process_id("k1", 12), process_id("k1", 10))}
    assert edge_pairs(snap, View.CONTAINERS) == {(container_id(sidecar), container_id(app))}
