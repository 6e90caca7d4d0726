"""One host described by two agents (a probe reinstalled beside the old one, a
DaemonSet beside a systemd probe): the connections into it and out of it are
resolved and counted as if one agent described it."""

from __future__ import annotations

import pytest

from tests.domain.test_topology import T0, connect, listen, published, report
from trioscope.domain.topology import TopologyGraph, View, host_id, process_id


def server(agent: str, t: float = T0, pid: int = 20):
    return report(agent, "hb", t, ips=("10.0.0.2",), processes=[{"pid": pid, "name": "postgres"}],
                  connections=[listen(5432, pid)])


def client(agent: str, t: float = T0, connections: list[dict] | None = None):
    return report(agent, "ha", t, ips=("10.0.0.1",), processes=[{"pid": 10, "name": "app"}],
                  connections=[connect("10.0.0.2", 5432, 10)] if connections is None else connections)


def counts(graph: TopologyGraph, view: View) -> dict[tuple[str, str], int]:
    return {(e.source, e.target): e.connections for e in published(graph).edges(view)}


EDGE = {(process_id("ha", 10), process_id("hb", 20)): 1}
HOST_EDGE = {(host_id("ha"), host_id("hb")): 1}


@pytest.mark.parametrize("order", [("b1", "b2", "a"), ("a", "b2", "b1"), ("b2", "a", "b1")])
def test_a_server_two_agents_report_keeps_the_edges_into_it(order):
    graph = TopologyGraph()
    reports = {"a": client("a"), "b1": server("b1"), "b2": server("b2")}
    for agent in order:
        graph.apply(reports[agent], T0)
    assert counts(graph, View.PROCESSES) == EDGE
    assert counts(graph, View.HOSTS) == HOST_EDGE
    graph.remove_agent("b1")
    assert counts(graph, View.PROCESSES) == EDGE


def test_agents_that_name_different_listeners_on_one_address_stay_ambiguous():
    graph = TopologyGraph()
    graph.apply(server("b1", pid=20), T0)
    graph.apply(server("b2", pid=21), T0)  # one host, two views of who listens: no guess
    graph.apply(client("a"), T0)
    assert counts(graph, View.PROCESSES) == {}
    graph.apply(server("b2", T0 + 1, pid=20), T0)  # they agree again
    assert counts(graph, View.PROCESSES) == EDGE


@pytest.mark.parametrize("order", [("a1", "a2"), ("a2", "a1")])
def test_a_connection_two_agents_of_the_client_report_is_counted_once(order):
    graph = TopologyGraph()
    graph.apply(server("b"), T0)
    for agent in order:
        graph.apply(client(agent), T0)
        assert counts(graph, View.PROCESSES) == EDGE
        assert counts(graph, View.HOSTS) == HOST_EDGE
    # The one that counted it stops reporting it: the other one counts it.
    graph.apply(client("a1", T0 + 1, connections=[]), T0)
    assert counts(graph, View.PROCESSES) == EDGE
    graph.apply(client("a1", T0 + 2), T0)
    assert counts(graph, View.PROCESSES) == EDGE
    graph.remove_agent("a1")
    assert counts(graph, View.HOSTS) == HOST_EDGE
    graph.remove_agent("a2")
    assert counts(graph, View.HOSTS) == {}


def test_connections_only_one_of_two_agents_reports_are_all_counted():
    graph = TopologyGraph()
    graph.apply(server("b"), T0)
    graph.apply(report("c", "hc", ips=("10.0.0.3",), processes=[{"pid": 30}], connections=[listen(80, 30)]), T0)
    graph.apply(client("a1", connections=[connect("10.0.0.2", 5432, 10)]), T0)
    graph.apply(client("a2", connections=[connect("10.0.0.2", 5432, 10), connect("10.0.0.3", 80, 10)]), T0)
    assert counts(graph, View.HOSTS) == {(host_id("ha"), host_id("hb")): 1, (host_id("ha"), host_id("hc")): 1}
