"""The topology graph: relations, connection resolution, views, merging, diffs."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from trioscope.domain.agents import host_metrics
from trioscope.domain.topology import (
    NodeKind,
    TopologyGraph,
    View,
    container_id,
    controls_for,
    host_id,
    process_group_id,
    process_id,
)
from trioscope.wire import container_id_from_cgroup, decode_report

T0 = 1_760_000_000.0
C1 = "a" * 64
C2 = "b" * 64


def iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def report(agent: str, host: str, t: float = T0, ips: tuple[str, ...] = (), containers: list[dict] | None = None,
           processes: list[dict] | None = None, connections: list[dict] | None = None, **extra: Any):
    doc: dict[str, Any] = {"agent_id": agent, "hostname": host, "timestamp": iso(t),
                           "host_info": {"hostname": host, "ip_addresses": list(ips)}}
    if containers is not None:
        doc["docker_info"] = {"containers": containers}
    if processes is not None:
        doc["processes_info"] = {"processes": processes}
    if connections is not None:
        doc["network_info"] = {"connections": connections}
    doc.update(extra)
    return decode_report(doc)


def listen(port: int, pid: int | None, address: str = "0.0.0.0") -> dict:
    return {"protocol": "tcp", "local_address": address, "local_port": port, "state": "LISTEN", "pid": pid}


def connect(remote: str, port: int, pid: int, local_port: int = 50000) -> dict:
    return {"protocol": "tcp", "local_address": "10.0.0.1", "local_port": local_port,
            "remote_address": remote, "remote_port": port, "state": "ESTABLISHED", "pid": pid}


def published(graph: TopologyGraph, now: float = T0):
    snapshot, _ = graph.publish(now)
    return snapshot


def edge_pairs(snapshot, view: View) -> set[tuple[str, str]]:
    return {(e.source, e.target) for e in snapshot.edges(view)}


# ---- relations ------------------------------------------------------------------------

def test_the_quick_start_report_makes_a_host_node_with_its_metrics():
    doc = {
        "agent_id": "agent-1", "hostname": "host-1", "timestamp": "2025-10-12T00:00:00Z",
        "host_info": {"hostname": "host-1", "kernel_version": "5.10.0",
                      "cpu_info": {"model": "Intel i7", "cores": 8, "usage": 25.5},
                      "memory_info": {"total_mb": 16384, "used_mb": 8192, "free_mb": 8192,
                                      "available_mb": 8192, "usage": 50.0}},
    }
    graph = TopologyGraph()
    graph.apply(decode_report(doc), T0)
    host = published(graph).node("host:host-1")
    assert host is not None and host.kind is NodeKind.HOST and host.label == "host-1"
    assert host.metrics["cpu_usage"] == 25.5 and host.metrics["memory_usage"] == 50.0
    assert host.metadata["kernel_version"] == "5.10.0" and host.metadata["cpu_cores"] == 8


def test_processes_belong_to_containers_by_full_id_short_id_or_cgroup():
    graph = TopologyGraph()
    graph.apply(report(
        "a1", "h1",
        containers=[{"id": C1, "name": "/db", "image": "postgres:16"}, {"id": C2, "name": "/web"}],
        processes=[
            {"pid": 10, "name": "postgres", "container_id": C1},
            {"pid": 11, "name": "nginx", "container_id": C2[:12]},
            {"pid": 12, "name": "worker", "cgroup": f"0::/system.slice/docker-{C2}.scope\n"},
            {"pid": 13, "name": "sshd"},
        ],
    ), T0)
    snap = published(graph)
    assert snap.node(container_id(C1)).parent == host_id("h1")
    assert snap.node(container_id(C1)).label == "db"
    assert snap.node(process_id("h1", 10)).parent == container_id(C1)
    assert snap.node(process_id("h1", 11)).parent == container_id(C2)
    assert snap.node(process_id("h1", 12)).parent == container_id(C2)
    assert snap.node(process_id("h1", 13)).parent == host_id("h1")
    # Named after their container in listings, where the container node itself may not be shown.
    assert snap.node(process_id("h1", 12)).as_dict()["metadata"]["container_name"] == "web"
    assert "container_name" not in snap.node(process_id("h1", 13)).as_dict()["metadata"]


def test_kernel_threads_are_flagged_from_their_parent_and_empty_command_line():
    graph = TopologyGraph()
    graph.apply(report("a1", "h1", processes=[
        {"pid": 1, "ppid": 0, "name": "systemd", "cmdline": "/sbin/init"},
        {"pid": 2, "ppid": 0, "name": "kthreadd"},
        {"pid": 9, "ppid": 2, "name": "kworker/0:1"},
        # A user-mode helper the kernel started (modprobe) has a command line: a process.
        {"pid": 30, "ppid": 2, "name": "modprobe", "cmdline": "/sbin/modprobe -q fs-xfs"},
        # An exited process has no command line either, but its parent is not kthreadd.
        {"pid": 31, "ppid": 1, "name": "defunct", "status": "zombie"},
        # In a PID namespace (the probe in a container) pid 2 is an ordinary process.
        {"pid": 40, "ppid": 1, "name": "sh", "cmdline": "sh -c serve"},
    ]), T0)
    graph.apply(report("a2", "h2", processes=[{"pid": 2, "ppid": 1, "name": "app", "cmdline": "app --serve"}]), T0)
    snap = published(graph)
    flagged = {node.id for node in snap.nodes(View.PROCESSES)
               if node.as_dict()["metadata"].get("kernel_thread") is True}  # in listings, not only details
    assert flagged == {process_id("h1", 2), process_id("h1", 9)}
    assert "kernel_thread" not in snap.node(process_id("h1", 1)).metadata  # absent, not false: listings stay small


def test_a_container_known_only_from_cgroups_is_inferred():
    graph = TopologyGraph()
    cid = "c" * 64
    graph.apply(report("a1", "h1", containers=[], processes=[
        {"pid": 7, "name": "pause", "cgroup": f"0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{cid}.scope"}
    ]), T0)
    node = published(graph).node(container_id(cid))
    assert node is not None and node.metadata["inferred"] is True and node.label == cid[:12]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"12:memory:/docker/{C1}\n", C1),
        (f"0::/system.slice/docker-{C1}.scope\n", C1),
        (f"0::/libpod_parent/libpod-{C1}\n", C1),
        (f"0::/machine.slice/libpod-{C1}.scope/container\n", C1),
        (f"0::/machine.slice/libpod-conmon-{C1}.scope\n", None),
        (f"0::/system.slice/containerd.service/k8s.io/{C1}\n", C1),
        (f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9.slice/crio-{C1}.scope\n", C1),
        (f"11:cpu:/kubepods/burstable/pod0b6c/{C1}\n", C1),
        ("0::/user.slice/user-1000.slice/session-2.scope\n", None),
        ("", None),
    ],
)
def test_container_ids_from_each_runtimes_cgroup_layout(text, expected):
    assert container_id_from_cgroup(text) == expected


# ---- connections -------------------------------------------------------------------------

def two_hosts(graph: TopologyGraph, t: float = T0, server_pid: int = 20) -> None:
    graph.apply(report("b", "hb", t, ips=("10.0.0.2",), processes=[{"pid": server_pid, "name": "postgres"}],
                       connections=[listen(5432, server_pid)]), t)
    graph.apply(report("a", "ha", t, ips=("10.0.0.1",), processes=[{"pid": 10, "name": "app"}],
                       connections=[connect("10.0.0.2", 5432, 10)]), t)


def test_a_connection_between_hosts_becomes_process_and_host_edges():
    graph = TopologyGraph()
    two_hosts(graph)
    snap = published(graph)
    assert edge_pairs(snap, View.PROCESSES) == {(process_id("ha", 10), process_id("hb", 20))}
    assert edge_pairs(snap, View.HOSTS) == {(host_id("ha"), host_id("hb"))}
    edge = next(snap.edges(View.HOSTS))
    assert edge.connections == 1


def test_connections_resolve_when_the_server_reports_after_the_client():
    graph = TopologyGraph()
    graph.apply(report("a", "ha", ips=("10.0.0.1",), processes=[{"pid": 10}],
                       connections=[connect("10.0.0.2", 5432, 10)]), T0)
    assert edge_pairs(published(graph), View.HOSTS) == set()
    graph.apply(report("b", "hb", ips=("10.0.0.2",), processes=[{"pid": 20}],
                       connections=[listen(5432, 20)]), T0)
    assert edge_pairs(published(graph), View.PROCESSES) == {(process_id("ha", 10), process_id("hb", 20))}


def test_edges_follow_a_restarted_server_process():
    graph = TopologyGraph()
    two_hosts(graph, server_pid=20)
    two_hosts(graph, T0 + 15, server_pid=21)
    assert edge_pairs(published(graph), View.PROCESSES) == {(process_id("ha", 10), process_id("hb", 21))}


def test_published_ports_and_container_networks_resolve_to_the_containers_process():
    graph = TopologyGraph()
    graph.apply(report(
        "b", "hb", ips=("10.0.0.2",),
        containers=[{"id": C1, "name": "/api", "ports": [{"container_port": 8080, "host_port": 30080}],
                     "networks": [{"name": "bridge", "ip_address": "172.17.0.5"}]}],
        processes=[{"pid": 30, "name": "api", "container_id": C1}],
        connections=[listen(8080, 30)],
    ), T0)
    graph.apply(report(
        "a", "ha", ips=("10.0.0.1",),
        containers=[{"id": C2, "name": "/client", "networks": [{"name": "bridge", "ip_address": "172.18.0.9"}]}],
        processes=[{"pid": 10, "name": "curl", "container_id": C2}],
        connections=[connect("10.0.0.2", 30080, 10)],
    ), T0)
    snap = published(graph)
    assert edge_pairs(snap, View.PROCESSES) == {(process_id("ha", 10), process_id("hb", 30))}
    assert edge_pairs(snap, View.CONTAINERS) == {(container_id(C2), container_id(C1))}


ENGINE = 40
"""The engine's process that holds a published port on the host: Podman's
conmon, Docker's docker-proxy, rootlessport; a host process, in no container."""


def engine_listens(port: int, pid: int | None, addresses: tuple[str, ...]) -> list[dict]:
    return [{**listen(port, pid, address), "protocol": "tcp6" if ":" in address else "tcp"}
            for address in addresses]


def client_of(ports: list[int], address: str = "10.0.0.2"):
    """Host ha's client in a container (C2) connecting to ``address`` at each of ``ports``."""
    return report("a", "ha", ips=("10.0.0.1",),
                  containers=[{"id": C2, "name": "/client",
                               "networks": [{"name": "bridge", "ip_address": "172.18.0.9"}]}],
                  processes=[{"pid": 10, "name": "curl", "container_id": C2}],
                  connections=[connect(address, port, 10, local_port=50000 + i) for i, port in enumerate(ports)])


@pytest.mark.parametrize("holder", [ENGINE, None], ids=["engine_process", "socket_without_pid"])
@pytest.mark.parametrize("addresses", [("0.0.0.0",), ("0.0.0.0", "::"), ("10.0.0.2", "192.168.1.2")],
                         ids=["wildcard", "dual_stack", "host_ips"])
def test_a_published_port_the_engine_holds_on_the_host_resolves_to_the_container(holder, addresses):
    """``podman run -p 18082:9000``: conmon listens on 18082 itself (a probe
    that may not see its process reports the socket without one)."""
    graph = TopologyGraph()
    graph.apply(report(
        "b", "hb", ips=("10.0.0.2", "192.168.1.2"),
        containers=[{"id": C1, "name": "/api", "ports": [{"container_port": 9000, "host_port": 18082}],
                     "networks": [{"name": "podman", "ip_address": "10.88.0.5"}]}],
        processes=[{"pid": 30, "name": "api", "container_id": C1}, {"pid": ENGINE, "name": "conmon"}],
        connections=[listen(9000, 30), *engine_listens(18082, holder, addresses)],
    ), T0)
    graph.apply(client_of([18082]), T0)
    snap = published(graph)
    assert edge_pairs(snap, View.PROCESSES) == {(process_id("ha", 10), process_id("hb", 30))}
    assert edge_pairs(snap, View.CONTAINERS) == {(container_id(C2), container_id(C1))}


def test_who_a_published_port_reaches_when_others_listen_on_it_too():
    """One case a port, the client connecting to each. A published port is its
    started container's, from the engine's socket on the host; not a stopped
    container's, which Podman still lists; not from a process of a container
    (one on the host's network), which holds it itself."""
    api, old, hostnet, web, shared, old_web, new_web = (f"{i:x}" * 64 for i in range(3, 10))
    network = [{"name": "podman", "ip_address": "10.88.0.5"}]
    graph = TopologyGraph()
    graph.apply(report(
        "b", "hb", ips=("10.0.0.2",),
        containers=[
            # 18082: started, conmon holds the port -> the container's api.
            {"id": api, "ports": [{"container_port": 9000, "host_port": 18082}], "networks": network},
            # 18083: stopped, still listed; a host process took the port -> that process.
            {"id": old, "state": "exited", "ports": [{"container_port": 9000, "host_port": 18083}]},
            # 18084: a process of a container on the host's network holds it -> that process.
            {"id": hostnet},
            {"id": web, "ports": [{"container_port": 80, "host_port": 18084}],
             "networks": [{"name": "podman", "ip_address": "10.88.0.6"}]},
            # 18085: a process of the published container holds the host port itself -> that process.
            {"id": shared, "ports": [{"container_port": 8080, "host_port": 18085}]},
            # 18086: a stopped container and, listed after it, a started one on its port, which no socket on
            # the host holds (an engine that forwards by firewall rules alone) -> the started one.
            {"id": old_web, "state": "exited", "ports": [{"container_port": 80, "host_port": 18086}]},
            {"id": new_web, "ports": [{"container_port": 80, "host_port": 18086}],
             "networks": [{"name": "podman", "ip_address": "10.88.0.7"}]},
        ],
        processes=[{"pid": 30, "container_id": api}, {"pid": ENGINE, "name": "conmon"}, {"pid": 45, "name": "python3"},
                   {"pid": 70, "container_id": hostnet}, {"pid": 80, "container_id": web},
                   {"pid": 90, "container_id": shared}, {"pid": 91, "container_id": shared},
                   {"pid": 100, "container_id": new_web}],
        connections=[listen(9000, 30), listen(18082, ENGINE), listen(18083, 45), listen(18084, 70), listen(80, 80),
                     listen(18085, 90), listen(8080, 91), listen(80, 100)],
    ), T0)
    graph.apply(client_of([18082, 18083, 18084, 18085, 18086]), T0)
    snap = published(graph)
    client = process_id("ha", 10)
    assert edge_pairs(snap, View.PROCESSES) == {(client, process_id("hb", pid)) for pid in (30, 45, 70, 90, 100)}
    assert edge_pairs(snap, View.CONTAINERS) == {(container_id(C2), container_id(c))
                                                 for c in (api, hostnet, shared, new_web)}


def test_a_published_port_the_engine_holds_resolves_to_the_container_over_loopback():
    """From the host itself (a host process, a container on the host's network)
    to 127.0.0.1:18082, held by conmon, reaches the published container; to
    18083, listed by a stopped container, the host process that has it now."""
    graph = TopologyGraph()
    graph.apply(report(
        "b", "hb", ips=("10.0.0.2",),
        containers=[{"id": C1, "name": "/api", "ports": [{"container_port": 9000, "host_port": 18082}],
                     "networks": [{"name": "podman", "ip_address": "10.88.0.5"}]},
                    {"id": C2, "name": "/hostnet"},
                    {"id": "c" * 64, "name": "/old", "state": "exited",
                     "ports": [{"container_port": 9000, "host_port": 18083}]}],
        processes=[{"pid": 30, "name": "api", "container_id": C1}, {"pid": ENGINE, "name": "conmon"},
                   {"pid": 45, "name": "python3"}, {"pid": 50, "name": "curl"},
                   {"pid": 60, "name": "worker", "container_id": C2}],
        connections=[listen(9000, 30), *engine_listens(18082, ENGINE, ("0.0.0.0", "::")),
                     listen(18083, 45, "127.0.0.1"),
                     connect("127.0.0.1", 18082, 50, local_port=50001),
                     connect("127.0.0.1", 18082, 60, local_port=50002),
                     connect("127.0.0.1", 18083, 50, local_port=50003)],
    ), T0)
    snap = published(graph)
    assert edge_pairs(snap, View.PROCESSES) == {(process_id("hb", 50), process_id("hb", 30)),
                                                (process_id("hb", 60), process_id("hb", 30)),
                                                (process_id("hb", 50), process_id("hb", 45))}
    assert edge_pairs(snap, View.CONTAINERS) == {(container_id(C2), container_id(C1))}


def test_a_container_started_or_stopped_takes_or_gives_back_its_published_port():
    """Only its state changes: the same socket on the host, whose process the
    probe may not see (conmon's while the container runs, someone else's
    after), and reports of the same shape."""
    graph = TopologyGraph()
    for t, state in ((T0, "exited"), (T0 + 15, "running"), (T0 + 30, "exited")):
        graph.apply(report(
            "b", "hb", t, ips=("10.0.0.2",),
            containers=[{"id": C1, "state": state, "ports": [{"container_port": 9000, "host_port": 18082}],
                         "networks": [{"name": "podman", "ip_address": "10.88.0.5"}]}],
            connections=[listen(18082, None)]), t)
        graph.apply(report("a", "ha", t, ips=("10.0.0.1",), containers=[{"id": C2, "name": "/client"}],
                           processes=[{"pid": 10, "container_id": C2}], connections=[connect("10.0.0.2", 18082, 10)]),
                    t)
        expected = {(container_id(C2), container_id(C1))} if state == "running" else set()
        assert edge_pairs(published(graph, t), View.CONTAINERS) == expected, state


def test_loopback_connections_stay_on_their_host_and_external_ones_are_dropped():
    graph = TopologyGraph()
    graph.apply(report("a", "ha", ips=("10.0.0.1",), processes=[{"pid": 1}, {"pid": 2}], connections=[
        listen(6379, 2, "127.0.0.1"),
        connect("127.0.0.1", 6379, 1),
        connect("93.184.216.34", 443, 1, local_port=50001),
    ]), T0)
    snap = published(graph)
    assert edge_pairs(snap, View.PROCESSES) == {(process_id("ha", 1), process_id("ha", 2))}
    assert edge_pairs(snap, View.HOSTS) == set()  # same host


def test_a_loopback_client_reaches_the_listener_on_loopback_not_one_of_its_port_elsewhere():
    """Listeners of one port on 127.0.0.1 and on another address (a resolver on
    127.0.0.53:53 beside a DNS server on a bridge's address): the loopback
    client was credited to whichever the report listed last."""
    graph = TopologyGraph()
    graph.apply(report("a", "ha", ips=("192.0.2.2",), processes=[{"pid": 1}, {"pid": 2}, {"pid": 3}], connections=[
        listen(19105, 2, "127.0.0.1"),
        listen(19105, 3, "192.0.2.2"),
        connect("127.0.0.1", 19105, 1),
    ]), T0)
    assert edge_pairs(published(graph), View.PROCESSES) == {(process_id("ha", 1), process_id("ha", 2))}


def test_a_connected_udp_socket_and_a_client_on_a_port_listened_to_elsewhere_are_edges():
    """A UDP socket connected to its peer has no state (the probe says ""): it
    made no edge. A client whose own port a listener holds on another address
    was taken for that listener's server side, and dropped."""
    graph = TopologyGraph()
    graph.apply(report("a", "ha", ips=("192.0.2.2",), processes=[{"pid": p} for p in (1, 2, 3, 4, 5)], connections=[
        {"protocol": "udp", "local_address": "127.0.0.1", "local_port": 19106, "pid": 2},  # a UDP server
        {"protocol": "udp", "local_address": "127.0.0.1", "local_port": 49475, "remote_address": "127.0.0.1",
         "remote_port": 19106, "state": "", "pid": 1},
        listen(19101, 3, "127.0.0.1"),
        listen(19104, 4, "192.0.2.2"),
        {"protocol": "tcp", "local_address": "192.0.2.2", "local_port": 19101, "remote_address": "192.0.2.2",
         "remote_port": 19104, "state": "ESTABLISHED", "pid": 5},
        # The server side of that connection: not an edge of its own.
        {"protocol": "tcp", "local_address": "192.0.2.2", "local_port": 19104, "remote_address": "192.0.2.2",
         "remote_port": 19101, "state": "ESTABLISHED", "pid": 4},
    ]), T0)
    assert edge_pairs(published(graph), View.PROCESSES) == {
        (process_id("ha", 1), process_id("ha", 2)), (process_id("ha", 5), process_id("ha", 4))}


def test_an_address_claimed_by_two_hosts_is_ambiguous_and_not_guessed():
    graph = TopologyGraph()
    for agent, host in (("b", "hb"), ("c", "hc")):
        graph.apply(report(agent, host, ips=("172.17.0.1",), processes=[{"pid": 5}],
                           connections=[listen(80, 5)]), T0)
    graph.apply(report("a", "ha", ips=("10.0.0.1",), processes=[{"pid": 1}],
                       connections=[connect("172.17.0.1", 80, 1)]), T0)
    assert edge_pairs(published(graph), View.HOSTS) == set()
    graph.remove_agent("c")
    assert edge_pairs(published(graph), View.HOSTS) == {(host_id("ha"), host_id("hb"))}


def test_pods_and_services_come_from_container_labels_with_their_own_edges():
    k8s = {"io.kubernetes.pod.name": "api-7", "io.kubernetes.pod.namespace": "prod",
           "io.kubernetes.pod.uid": "u-1", "app": "api"}
    graph = TopologyGraph()
    graph.apply(report("b", "hb", ips=("10.0.0.2",), containers=[{"id": C1, "labels": k8s}],
                       processes=[{"pid": 30, "container_id": C1}], connections=[listen(8080, 30)]), T0)
    compose = {"com.docker.compose.project": "shop", "com.docker.compose.service": "web"}
    graph.apply(report("a", "ha", ips=("10.0.0.1",), containers=[{"id": C2, "labels": compose}],
                       processes=[{"pid": 10, "container_id": C2}],
                       connections=[connect("10.0.0.2", 8080, 10)]), T0)
    snap = published(graph)
    pod = snap.node("pod:prod/api-7")
    assert pod is not None and pod.parent == host_id("hb") and pod.metadata["uid"] == "u-1"
    assert pod.metadata["containers"] == [container_id(C1)]
    assert snap.node("service:prod/api") is not None and snap.node("service:shop/web") is not None
    assert edge_pairs(snap, View.SERVICES) == {("service:shop/web", "service:prod/api")}
    assert edge_pairs(snap, View.PODS) == set()  # the client is not in a pod


def test_a_pods_sums_leave_out_cpu_and_memory_while_a_running_member_has_no_statistics():
    """Counted as 0, a member whose statistics the probe left out made the pod's
    CPU and memory (and their history) dip by its share."""
    k8s = {"io.kubernetes.pod.name": "api-7", "io.kubernetes.pod.namespace": "prod"}

    def containers(second_stats: bool, second_state: str = "running") -> list[dict]:
        return [{"id": C1, "labels": k8s, "state": "running", "stats": {"cpu_percent": 10.0, "memory_usage_mb": 100.0}},
                {"id": C2, "labels": k8s, "state": second_state,
                 **({"stats": {"cpu_percent": 20.0, "memory_usage_mb": 200.0}} if second_stats else {})}]

    graph = TopologyGraph()
    sums = []
    for t, (stats, state) in enumerate([(True, "running"), (False, "running"), (True, "running"), (False, "exited")]):
        graph.apply(report("a", "h", T0 + t, containers=containers(stats, state)), T0 + t)
        sums.append(published(graph, T0 + t).node("pod:prod/api-7").metrics)
    assert sums[0] == sums[2] == {"cpu_percent": 30.0, "memory_mb": 300.0, "containers": 2.0}
    assert sums[1] == {"containers": 2.0}  # not known: no dip to 10 % and 100 MB
    assert sums[3] == {"cpu_percent": 10.0, "memory_mb": 100.0, "containers": 2.0}  # a stopped member uses nothing


def test_a_container_or_process_listed_twice_is_its_last_entry_throughout():
    k8s = {"io.kubernetes.pod.name": "api-7", "io.kubernetes.pod.namespace": "prod"}
    graph = TopologyGraph()
    graph.apply(report("a", "h", containers=[{"id": C1, "name": "/old", "labels": k8s}, {"id": C1, "name": "/new"}],
                       processes=[{"pid": 5, "name": "first", "container_id": C1}, {"pid": 5, "name": "second"}]), T0)
    snap = published(graph)
    assert snap.node(container_id(C1)).label == "new"
    assert snap.node("pod:prod/api-7") is None  # the pod came only with the entry that lost
    assert (snap.node(process_id("h", 5)).label, snap.node(process_id("h", 5)).parent) == ("second", host_id("h"))


# ---- merging, staleness, versions ------------------------------------------------------------

def test_an_older_report_from_the_same_agent_is_ignored():
    graph = TopologyGraph()
    graph.apply(report("a", "h", T0 + 10, processes=[{"pid": 2}]), T0 + 10)
    assert graph.apply(report("a", "h", T0, processes=[{"pid": 1}]), T0 + 10) is False
    snap = published(graph)
    assert snap.node(process_id("h", 2)) is not None and snap.node(process_id("h", 1)) is None


def test_the_servers_clock_set_back_does_not_freeze_an_agent_and_a_buffered_report_stays_older():
    """The server's clock 10 minutes ahead, then set right: the reports after
    the step, all dated before the last one before it (``seen`` is never after
    a report's receipt), were left out for 10 minutes, the host frozen."""
    graph = TopologyGraph()
    assert graph.apply(report("a", "h", T0, processes=[{"pid": 1}]), T0 + 600, seen=T0 + 600)
    assert graph.apply(report("a", "h", T0 + 15, processes=[{"pid": 2}]), T0 + 15) is True
    assert graph.apply(report("a", "h", T0 + 5, processes=[{"pid": 3}]), T0 + 20) is False  # buffered: older
    snap = published(graph)
    assert snap.node(process_id("h", 2)) is not None
    assert snap.node(process_id("h", 1)) is None and snap.node(process_id("h", 3)) is None


def test_a_buffered_report_taken_by_a_replica_a_little_behind_another_stays_older():
    """The newest report taken by a replica whose clock is 3 s ahead of the
    one that takes a buffered report next: its time after that one's receipt
    is the replicas' skew, no step of a clock."""
    graph = TopologyGraph()
    assert graph.apply(report("a", "h", T0 + 10, processes=[{"pid": 1}]), T0 + 3)  # (its probe's clock ahead)
    assert graph.apply(report("a", "h", T0 - 50, processes=[{"pid": 2}]), T0 + 1) is False


def test_a_node_two_agents_report_is_merged_newest_first_key_by_key():
    graph = TopologyGraph()
    graph.apply(report("a1", "shared", T0, host_info={"hostname": "shared", "os": "linux", "kernel_version": "5.10"}), T0)
    graph.apply(report("a2", "shared", T0 + 5, host_info={"hostname": "shared", "kernel_version": "6.1"}), T0 + 5)
    host = published(graph).node(host_id("shared"))
    assert host.metadata["kernel_version"] == "6.1"  # newer report wins
    assert host.metadata["os"] == "linux"  # only the older one said it
    assert host.agent_id == "a2"
    graph.remove_agent("a2")
    assert published(graph).node(host_id("shared")).metadata["kernel_version"] == "5.10"


# ---- controls ----------------------------------------------------------------------------

def test_only_a_signed_reports_containers_offer_controls():
    """The control endpoint delivers a control only to an enrolled agent that
    reported the container: an unsigned report's containers offer none."""
    graph = TopologyGraph()
    graph.apply(report("signed", "h1", containers=[{"id": C1, "state": "running"}]), T0, enrolled=True)
    graph.apply(report("unsigned", "h2", containers=[{"id": C2, "state": "running"}]), T0)
    snap = published(graph)
    assert [c["id"] for c in snap.node(container_id(C1)).metadata["controls"]] == [
        "stop", "restart", "pause", "logs", "exec", "inspect"]
    # Asked to confirm: what stops or freezes every process of the container (pause was not).
    assert [c["id"] for c in snap.node(container_id(C1)).metadata["controls"] if c["confirm"]] == [
        "stop", "restart", "pause"]
    assert "controls" not in snap.node(container_id(C2)).metadata


def test_the_same_report_signed_or_not_gains_or_loses_the_controls():
    """A probe enrolled later (or decommissioned, then reporting unsigned)
    sends reports of the same shape as before: they are not taken as only
    new metrics of the last."""
    graph = TopologyGraph()
    for t, enrolled in ((T0, False), (T0 + 15, True), (T0 + 30, False)):
        graph.apply(report("a", "h", t, containers=[{"id": C1, "state": "running"}]), t, enrolled=enrolled)
        assert ("controls" in published(graph, t).node(container_id(C1)).metadata) is enrolled


def test_a_container_two_agents_report_offers_the_controls_of_its_merged_state():
    """The controls and the state come from the signed report, however newer
    the unsigned one (it used to give the state, so the control endpoint
    refused the signed agent's stop: see test_topology_signed_merge); the
    controls are those of the state shown, which the control endpoint checks."""
    graph = TopologyGraph()
    graph.apply(report("signed", "h", T0, containers=[{"id": C1, "state": "running"}]), T0, enrolled=True)
    graph.apply(report("echo", "h2", T0 + 5, containers=[{"id": C1, "state": "exited"}]), T0)
    node = published(graph).node(container_id(C1))
    assert node.metadata["state"] == "running" and node.metadata["controls"] == controls_for("running")
    graph.remove_agent("signed")
    node = published(graph).node(container_id(C1))
    assert node.metadata["state"] == "exited" and "controls" not in node.metadata


def test_expire_removes_agents_not_heard_from_within_the_threshold():
    graph = TopologyGraph()
    graph.apply(report("old", "h-old", processes=[{"pid": 1}]), received_at=T0)
    graph.apply(report("new", "h-new"), received_at=T0 + 250)
    expired = graph.expire(now=T0 + 301, threshold=300)
    assert expired.agents == ("old",) and expired.nodes == 2
    snap = published(graph)
    assert [n.id for n in snap.nodes(View.HOSTS)] == [host_id("h-new")]


def test_expiring_removes_one_agent_a_step():
    """A thousand agents gone silent together were a second of removals at once:
    ``expiring`` yields after each, and ends where ``expire`` would."""
    graph = TopologyGraph()
    for index in range(3):
        graph.apply(report(f"old-{index}", f"h-old-{index}"), received_at=T0)
    graph.apply(report("new", "h-new"), received_at=T0 + 250)
    steps = graph.expiring(now=T0 + 301, threshold=300)
    left = []
    with pytest.raises(StopIteration) as done:
        while True:
            next(steps)
            left.append(len(graph.partitions))
    assert left == [3, 2, 1]
    assert done.value.value.agents == ("old-0", "old-1", "old-2")
    assert [n.id for n in published(graph).nodes(View.HOSTS)] == [host_id("h-new")]


def test_containers_that_come_and_go_leave_nothing_behind():
    graph = TopologyGraph()
    for i in range(300):  # a CI host: every report a new container with one process
        cid = f"{i:064x}"
        graph.apply(report("a", "h", T0 + i, containers=[{"id": cid, "name": f"/job-{i}"}],
                           processes=[{"pid": 1000 + i, "container_id": cid}]), T0 + i)
    assert len(graph.nodes) == 4  # the host, the container, its process and the process's group
    # Parent -> children only for parents that have children now (bounded memory).
    assert len(graph._children) == 2
    details = graph.details(container_id(f"{299:064x}"))
    assert [c["id"] for c in details["children"]] == [process_id("h", 1299)]


def test_versions_increase_only_when_something_changed():
    graph = TopologyGraph()
    graph.apply(report("a", "h"), T0)
    first, diff = graph.publish(T0)
    assert first.version == 1 and diff is not None and set(diff.nodes_added) == {host_id("h")}
    again, nothing = graph.publish(T0)
    assert again is first and nothing is None
    graph.apply(report("a", "h", T0 + 15, processes=[{"pid": 3}]), T0 + 15)
    second, diff = graph.publish(T0 + 15)
    assert second.version == 2 and diff.previous_version == 1
    assert set(diff.nodes_added) == {process_id("h", 3), process_group_id("h", "3")}  # a nameless one: by pid
    assert first.node(process_id("h", 3)) is None  # the old snapshot did not change


def test_snapshot_json_has_the_seed_shape_per_view():
    graph = TopologyGraph()
    two_hosts(graph)
    snap = published(graph, T0)
    full = orjson.loads(snap.json())
    assert set(full) == {"topology"}
    topology = full["topology"]
    assert {"nodes", "edges", "timestamp", "version"} <= set(topology)
    assert topology["nodes"][host_id("ha")]["type"] == "host"
    hosts = orjson.loads(snap.json(View.HOSTS))["topology"]
    assert set(hosts["nodes"]) == {host_id("ha"), host_id("hb")}
    assert list(hosts["edges"].values())[0]["source"] == host_id("ha")
    assert snap.json(View.HOSTS) is snap.json(View.HOSTS)  # encoded once per version


def test_a_streamed_listing_in_small_batches_is_the_same_document():
    graph = TopologyGraph()
    two_hosts(graph)
    snap = published(graph, T0)
    streamed = orjson.loads(b"".join(snap.chunks(None, batch=1)))["topology"]
    assert streamed == orjson.loads(snap.json())["topology"]
    assert len(streamed["edges"]) >= 2  # batches of one: every edge its own chunk
    assert all(streamed["edges"][e.id] == e.as_dict() for e in snap.edges())


def test_details_show_parents_children_and_connected_nodes():
    graph = TopologyGraph()
    graph.apply(report("b", "hb", ips=("10.0.0.2",), containers=[{"id": C1, "name": "/db"}],
                       processes=[{"pid": 20, "name": "postgres", "container_id": C1}],
                       connections=[listen(5432, 20)]), T0)
    graph.apply(report("a", "ha", ips=("10.0.0.1",), processes=[{"pid": 10, "name": "app"}],
                       connections=[connect("10.0.0.2", 5432, 10)]), T0)
    details = graph.details(process_id("hb", 20))
    assert [p["id"] for p in details["parents"]] == [container_id(C1), host_id("hb")]
    assert details["connected"] == [{"id": process_id("ha", 10), "type": "process", "label": "app", "agent_id": "a",
                                     "directions": ["inbound"], "connections": 1}]
    container = graph.details(container_id(C1))
    assert [c["id"] for c in container["children"]] == [process_id("hb", 20)]
    assert graph.details("host:nope") is None


def test_a_host_whose_report_was_cut_says_so_on_its_node_and_not_once_it_is_whole() -> None:
    """A probe cuts a report over the server's limits (processes, connections,
    containers) and says how much in ``left_out``: the host's node carries it,
    so the operator learns the graph is not all of that host; the next whole
    report, of the same shape or not, clears it."""
    graph = TopologyGraph(now=T0)
    procs = [{"pid": 1, "name": "init"}]
    graph.apply(report("a", "h1", T0, processes=procs,
                       left_out={"processes": 312, "connections": 40, "containers": 2}), T0)
    assert published(graph).node(host_id("h1")).metadata["left_out"] == {
        "processes": 312, "connections": 40, "containers": 2}
    graph.apply(report("a", "h1", T0 + 15, processes=procs), T0 + 15)  # same shape: refreshed
    assert "left_out" not in published(graph, T0 + 15).node(host_id("h1")).metadata


def test_a_host_whose_probe_could_not_see_all_of_it_says_so_on_its_node() -> None:
    """A probe without the rights to see its host whole (sockets whose process
    it may not read, processes hidden, its own namespaces, a metric it could
    not read) says so in ``gaps``: the host's node carries it, and a metric
    it could not read is no metric of 0 in the host's history."""
    graph = TopologyGraph(now=T0)
    gaps = {"unowned_sockets": 12, "hidden_threads": 0, "own_pid_namespace": True,
            "own_network_namespace": False, "unreadable": ["network_io"]}
    graph.apply(report("a", "h1", T0, gaps=gaps), T0)
    host = published(graph).node(host_id("h1"))
    assert host.metadata["gaps"] == gaps
    assert "network_rx_bytes_per_sec" not in host.metrics and "disk_read_bytes_per_sec" in host.metrics
    graph.apply(report("a", "h1", T0 + 15), T0 + 15)  # seen whole: said no more
    host = published(graph, T0 + 15).node(host_id("h1"))
    assert "gaps" not in host.metadata and "network_rx_bytes_per_sec" in host.metrics
    # The agent's history and the metrics API alike (``host_metrics``): no sample of 0.
    recorded = host_metrics(report("a", "h1", T0, gaps=gaps))
    assert "network_rx_bytes_per_sec" not in recorded and "disk_read_bytes_per_sec" in recorded
