"""Kubernetes pods: a pod's containers share the network of its sandbox (the
pause container), which alone lists the pod's IP; the app containers list no
networks, and are not on the host's network for that."""

from __future__ import annotations

from tests.domain.test_topology import T0, connect, edge_pairs, listen, published, report
from trioscope.domain.topology import TopologyGraph, View, container_id, host_id, process_id

SANDBOX_1, APP_1, SANDBOX_2, APP_2 = "71" * 32, "72" * 32, "73" * 32, "74" * 32


def labels(pod: str, app: str, container: str) -> dict[str, str]:
    return {"io.kubernetes.pod.name": pod, "io.kubernetes.pod.namespace": "prod",
            "io.kubernetes.pod.uid": f"{pod}-uid", "io.kubernetes.container.name": container, "app": app}


def pod_containers(pod: str, app: str, sandbox: str, container: str, pod_ip: str | None) -> list[dict]:
    networks = [{"name": "k8s-pod-network", "ip_address": pod_ip}] if pod_ip else []
    return [{"id": sandbox, "name": f"/k8s_POD_{pod}", "labels": labels(pod, app, "POD"), "networks": networks},
            {"id": container, "name": f"/k8s_app_{pod}", "labels": labels(pod, app, "app")}]


def backend_node(pod_ip: str | None = "10.244.1.5"):
    """Node k1: pod backend-1, whose app (process 10) listens on every address of its network."""
    return report("k1", "k1", ips=("10.10.0.1",),
                  containers=pod_containers("backend-1", "backend", SANDBOX_1, APP_1, pod_ip),
                  processes=[{"pid": 9, "name": "pause", "container_id": SANDBOX_1},
                             {"pid": 10, "name": "backend", "container_id": APP_1}, {"pid": 11, "name": "kubelet"}],
                  connections=[listen(8080, 10), listen(10250, 11)])


def test_a_connection_to_a_pod_ip_reaches_the_process_in_the_pods_app_container():
    graph = TopologyGraph()
    graph.apply(backend_node(), T0)
    graph.apply(report("k2", "k2", ips=("10.10.0.2",),
                       containers=pod_containers("frontend-1", "frontend", SANDBOX_2, APP_2, "10.244.2.7"),
                       processes=[{"pid": 19, "name": "pause", "container_id": SANDBOX_2},
                                  {"pid": 20, "name": "frontend", "container_id": APP_2}],
                       connections=[connect("10.244.1.5", 8080, 20)]), T0)
    snap = published(graph)
    assert edge_pairs(snap, View.PROCESSES) == {(process_id("k2", 20), process_id("k1", 10))}
    assert edge_pairs(snap, View.CONTAINERS) == {(container_id(APP_2), container_id(APP_1))}
    assert edge_pairs(snap, View.PODS) == {("pod:prod/frontend-1", "pod:prod/backend-1")}
    assert edge_pairs(snap, View.SERVICES) == {("service:prod/frontend", "service:prod/backend")}


def test_a_pods_listener_is_not_on_its_nodes_address():
    graph = TopologyGraph()
    graph.apply(backend_node(), T0)
    graph.apply(report("k3", "k3", ips=("10.10.0.3",), processes=[{"pid": 30, "name": "scanner"}],
                       connections=[connect("10.10.0.1", 8080, 30), connect("10.10.0.1", 10250, 30, 50001)]), T0)
    snap = published(graph)
    # Only the kubelet, on the node's own network, is there.
    assert edge_pairs(snap, View.PROCESSES) == {(process_id("k3", 30), process_id("k1", 11))}
    assert edge_pairs(snap, View.HOSTS) == {(host_id("k3"), host_id("k1"))}


def test_a_pod_on_the_hosts_network_listens_on_the_hosts_addresses():
    graph = TopologyGraph()
    graph.apply(backend_node(pod_ip=None), T0)  # hostNetwork: true, no container lists a network
    graph.apply(report("k3", "k3", ips=("10.10.0.3",), processes=[{"pid": 30, "name": "scanner"}],
                       connections=[connect("10.10.0.1", 8080, 30)]), T0)
    assert edge_pairs(published(graph), View.PROCESSES) == {(process_id("k3", 30), process_id("k1", 10))}
