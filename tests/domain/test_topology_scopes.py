"""Each tenant's enrolled probes describe nodes of their own: node ids carry
the tenant's scope (``node_scope``), so two tenants' hosts of one name, or
pods of one namespace and name, stay two nodes (nothing of one mixed into the
other, each shown as its own probe reports it), an unsigned report (no scope)
never lands on an enrolled probe's node, and a connection is resolved against
the endpoints of its own scope only (private addresses overlap between
tenants)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.domain.test_topology import T0, connect, edge_pairs, listen, published, report
from trioscope.domain.topology import (
    TopologyGraph, View, container_id, host_id, id_scope, node_scope, pod_id, process_group_of, process_id,
    reported_container, service_id, visible_to,
)
from trioscope.domain.topology._model import group_names

ACME, GLOBEX = node_scope("acme"), node_scope("globex")
POD_LABELS = {"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "shop",
              "io.kubernetes.pod.uid": "u1", "app.kubernetes.io/name": "web"}


def _container(cid: str, **extra: Any) -> dict[str, Any]:
    return {"id": cid, "name": "/web", "state": "running", "image": "nginx", **extra}


def test_two_tenants_hosts_of_one_name_are_two_nodes_each_as_its_probe_reports_it() -> None:
    graph = TopologyGraph()
    graph.apply(report("a", "web-1", T0, host_info={"hostname": "web-1", "kernel_version": "6.1"},
                       processes=[{"pid": 1, "name": "nginx"}]), T0, enrolled=True, scope=ACME)
    graph.apply(report("b", "web-1", T0 + 5, host_info={"hostname": "web-1", "kernel_version": "5.4"},
                       processes=[{"pid": 1, "name": "postgres"}, {"pid": 2, "name": "sh"}]),
                T0 + 5, enrolled=True, scope=GLOBEX)
    snapshot = published(graph, T0 + 5)
    hosts = {node.id: node for node in snapshot.nodes(View.HOSTS)}
    assert set(hosts) == {host_id("web-1", ACME), host_id("web-1", GLOBEX)}
    a, b = hosts[host_id("web-1", ACME)], hosts[host_id("web-1", GLOBEX)]
    assert (a.label, a.agent_id, a.metadata["kernel_version"]) == ("web-1", "a", "6.1")
    assert (b.label, b.agent_id, b.metadata["kernel_version"]) == ("web-1", "b", "5.4")
    assert graph.sources(a.id) == ("a",) and graph.sources(b.id) == ("b",)
    processes = {node.id: node for node in snapshot.nodes(View.PROCESSES)}
    assert set(processes) == {process_id("web-1", 1, ACME), process_id("web-1", 1, GLOBEX),
                              process_id("web-1", 2, GLOBEX)}
    assert processes[process_id("web-1", 1, ACME)].label == "nginx"
    assert processes[process_id("web-1", 1, ACME)].parent == a.id
    # Process groups are a host's: apart too.
    assert process_group_of(processes[process_id("web-1", 1, ACME)]) != process_group_of(
        processes[process_id("web-1", 1, GLOBEX)])


def test_an_unsigned_report_never_reaches_an_enrolled_probes_nodes_whatever_its_names() -> None:
    graph = TopologyGraph()
    graph.apply(report("a", "web-1", T0, processes=[{"pid": 1, "name": "nginx"}]), T0, enrolled=True, scope=ACME)
    # The very text of the scoped id as its host name, and the plain name.
    for agent, name in (("anon", f"web-1@{ACME}"), ("anon2", "web-1")):
        graph.apply(report(agent, name, T0 + 5, processes=[{"pid": 1, "name": "evil"}, {"pid": 7, "name": "x"}]),
                    T0 + 5)
    snapshot = published(graph, T0 + 5)
    enrolled_host = snapshot.node(host_id("web-1", ACME))
    assert enrolled_host is not None and graph.sources(enrolled_host.id) == ("a",)
    children = graph.details(enrolled_host.id)["children"]
    assert [c["id"] for c in children if c["type"] == "process"] == [process_id("web-1", 1, ACME)]
    mine = snapshot.node(process_id("web-1", 1, ACME))
    assert mine is not None and mine.label == "nginx" and mine.agent_id == "a"
    assert {n.id for n in snapshot.nodes(View.HOSTS)} == {
        host_id("web-1", ACME), host_id("web-1"), f"host:web-1%40{ACME}"}


def test_two_tenants_pods_and_services_of_one_name_are_apart() -> None:
    graph = TopologyGraph()
    graph.apply(report("a", "n1", T0, containers=[_container("a" * 64, labels=POD_LABELS)]), T0,
                enrolled=True, scope=ACME)
    graph.apply(report("b", "n2", T0, containers=[_container("b" * 64, labels=POD_LABELS)]), T0,
                enrolled=True, scope=GLOBEX)
    snapshot = published(graph, T0)
    pods = {node.id: node for node in snapshot.nodes(View.PODS)}
    assert set(pods) == {pod_id("shop", "web-0", ACME), pod_id("shop", "web-0", GLOBEX)}
    acme = pods[pod_id("shop", "web-0", ACME)]
    assert acme.metadata["containers"] == [container_id("a" * 64, ACME)] and acme.metadata["hosts"] == [
        host_id("n1", ACME)]
    assert (acme.metadata["namespace"], acme.metadata["name"], acme.label) == ("shop", "web-0", "web-0")
    services = {node.id: node for node in snapshot.nodes(View.SERVICES)}
    assert set(services) == {service_id("shop", "web", ACME), service_id("shop", "web", GLOBEX)}
    assert services[service_id("shop", "web", GLOBEX)].metadata["containers"] == [container_id("b" * 64, GLOBEX)]


def test_a_connection_finds_the_endpoints_of_its_own_tenant_only() -> None:
    """Both tenants run a database at 10.0.0.5:5432: each client's edge goes
    to its own tenant's, and neither claim makes the other's ambiguous."""
    graph = TopologyGraph()
    for agent, scope in (("db-a", ACME), ("db-b", GLOBEX)):
        graph.apply(report(agent, "db", T0, ips=("10.0.0.5",), processes=[{"pid": 5, "name": "postgres"}],
                           connections=[listen(5432, 5)]), T0, enrolled=True, scope=scope)
    graph.apply(report("app-a", "app", T0, ips=("10.0.0.9",), processes=[{"pid": 9, "name": "api"}],
                       connections=[connect("10.0.0.5", 5432, 9)]), T0, enrolled=True, scope=ACME)
    graph.apply(report("anon", "stray", T0, ips=("10.0.0.8",), processes=[{"pid": 3, "name": "curl"}],
                       connections=[connect("10.0.0.5", 5432, 3)]), T0)
    snapshot = published(graph, T0)
    assert edge_pairs(snapshot, View.HOSTS) == {(host_id("app", ACME), host_id("db", ACME))}
    assert edge_pairs(snapshot, View.PROCESSES) == {(process_id("app", 9, ACME), process_id("db", 5, ACME))}


def test_a_probe_enrolled_in_another_tenant_moves_its_nodes_there() -> None:
    graph = TopologyGraph()
    doc = {"processes": [{"pid": 1, "name": "nginx"}]}
    graph.apply(report("a", "web-1", T0, **doc), T0, enrolled=True, scope=ACME)
    graph.apply(report("a", "web-1", T0 + 5, **doc), T0 + 5, enrolled=True, scope=GLOBEX)
    ids = {node.id for node in published(graph, T0 + 5).nodes()}
    assert host_id("web-1", GLOBEX) in ids and process_id("web-1", 1, GLOBEX) in ids
    assert not {host_id("web-1", ACME), process_id("web-1", 1, ACME)} & ids


@pytest.mark.parametrize(("namespace", "name"), [("shop", "web-0"), ("a/b", "c"), ("a", "b/c"), ("x@y", "50%"),
                                                 ("%40", "@")])
def test_a_group_id_gives_back_its_namespace_and_name(namespace: str, name: str) -> None:
    for scope in (None, ACME):
        assert group_names(pod_id(namespace, name, scope)) == (namespace, name)
        assert group_names(service_id(namespace, name, scope)) == (namespace, name)
    # Distinct names stay distinct ids (a namespace's "/" is no separator).
    assert pod_id("a/b", "c") != pod_id("a", "b/c")


def test_a_container_node_gives_back_the_id_its_probe_reported() -> None:
    for scope in (None, ACME):
        assert reported_container(container_id("ab" * 32, scope)) == "ab" * 32
    assert container_id("ab" * 32) == "container:" + "ab" * 32  # unsigned: as before


def test_an_unsigned_address_naming_a_scope_reaches_no_tenants_endpoints() -> None:
    """An address is any text a probe sends: ``10.0.0.5@<scope>`` from an
    unsigned report neither joins a tenant's endpoints nor makes them
    ambiguous (it made an edge to a tenant's database, and took one away)."""
    graph = TopologyGraph()
    graph.apply(report("db-a", "db", T0, ips=("10.0.0.5",), processes=[{"pid": 5, "name": "postgres"}],
                       connections=[listen(5432, 5)]), T0, enrolled=True, scope=ACME)
    graph.apply(report("app-a", "app", T0, ips=("10.0.0.9",), processes=[{"pid": 9, "name": "api"}],
                       connections=[connect("10.0.0.5", 5432, 9), connect("10.0.0.7", 6379, 9)]),
                T0, enrolled=True, scope=ACME)
    graph.apply(report("anon", "evil", T0, ips=(f"10.0.0.7@{ACME}",),
                       processes=[{"pid": 66, "name": "fake"}, {"pid": 67, "name": "probe"}],
                       connections=[listen(6379, 66, f"10.0.0.7@{ACME}"), listen(5432, 66, f"10.0.0.5@{ACME}"),
                                    connect(f"10.0.0.5@{ACME}", 5432, 67)]), T0)
    edges = edge_pairs(published(graph, T0), View.PROCESSES)
    assert {(a, b) for a, b in edges if ACME in a or ACME in b} == {(process_id("app", 9, ACME), process_id("db", 5, ACME))}
    assert (process_id("evil", 67), process_id("evil", 66)) in edges  # its own, on its host


def test_a_report_under_another_scope_replaces_the_agents_nodes_whatever_its_time() -> None:
    """An agent id taken by another tenant's probe (or reported unsigned once
    freed): its report, dated before the last one, is merged, and nothing of
    the first tenant's stays under it."""
    graph = TopologyGraph()
    graph.apply(report("r", "payroll", T0, processes=[{"pid": 10, "name": "db"}]), T0, enrolled=True, scope=ACME)
    assert graph.apply(report("r", "other", T0 - 60, processes=[{"pid": 3, "name": "sh"}]), T0 + 1,
                       enrolled=True, scope=GLOBEX)
    ids = {node.id for node in published(graph, T0 + 1).nodes()}
    assert host_id("other", GLOBEX) in ids and not any(i.endswith(ACME) or f"@{ACME}:" in i for i in ids)
    # The same scope keeps the newest report, as ever.
    assert not graph.apply(report("r", "older", T0 - 120), T0 + 2, enrolled=True, scope=GLOBEX)
    assert graph.apply(report("r", "payroll", T0 - 120), T0 + 3)  # unsigned once freed: no longer the tenant's
    assert {node.id for node in published(graph, T0 + 3).nodes()} >= {host_id("payroll")}


@pytest.mark.parametrize(("node_id", "scope"), [
    (host_id("web-1", ACME), ACME), (host_id("web-1"), None), (host_id(f"web-1@{ACME}"), None),
    (process_id("a:b@c", 7, ACME), ACME), (process_id(f"h@{ACME}", 7), None),
    (container_id("ab" * 32, GLOBEX), GLOBEX), (pod_id("n@s", f"x@{ACME}"), None),
    (service_id("shop", "web", ACME), ACME),
    (f"process_group:h:name@{ACME}", None),  # an unscoped host's group of a process named so
    (f"process_group:h@{ACME}:nginx", ACME),
])
def test_a_node_id_tells_its_scope(node_id: str, scope: str | None) -> None:
    assert id_scope(node_id) == scope


def test_a_readers_tenant_sees_its_scoped_nodes_whoever_reports_under_their_agent_id() -> None:
    everyone = visible_to(ACME, lambda agent: True)
    assert everyone(host_id("h", ACME), "r") and not everyone(host_id("h", GLOBEX), "r")
    assert everyone(host_id("h"), "loose")  # unscoped: by its reporter
    nobody = visible_to(ACME, lambda agent: False)
    assert nobody(host_id("h", ACME), "r") and not nobody(host_id("h"), "loose") and not nobody(host_id("h"), None)
