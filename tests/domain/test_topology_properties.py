"""Merge laws of the topology, checked on generated reports.

The universe is deliberately small (a few agents, hosts, addresses, container
ids and ports) so that generated reports collide: two agents describing one
host, containers reported by two probes, connections to ambiguous addresses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trioscope.domain.topology import TopologyGraph, View
from trioscope.wire import Report, decode_report

T0 = 1_760_000_000.0
AGENTS = ["a0", "a1", "a2", "a3"]
HOSTS = ["h0", "h1", "h2"]
IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "172.17.0.2"]
CONTAINERS = ["c" * 64, "d" * 64, "e" * 64]
PORTS = [80, 5432]
LABELS = [
    {},
    {"io.kubernetes.pod.name": "p1", "io.kubernetes.pod.namespace": "ns", "app": "api"},
    {"io.kubernetes.pod.name": "p2", "io.kubernetes.pod.namespace": "ns", "app": "api"},
    {"com.docker.compose.project": "shop", "com.docker.compose.service": "web"},
]

containers = st.lists(
    st.fixed_dictionaries({
        "id": st.sampled_from(CONTAINERS),
        "labels": st.sampled_from(LABELS),
        "state": st.sampled_from(["running", "paused", "exited"]),
        "networks": st.lists(st.fixed_dictionaries({"name": st.just("bridge"), "ip_address": st.sampled_from(IPS)}),
                             max_size=1),
        # Published on the ports others listen on: who has the port depends on the container's state.
        "ports": st.lists(st.fixed_dictionaries({"container_port": st.sampled_from(PORTS),
                                                 "host_port": st.sampled_from([None, *PORTS])}), max_size=1),
        "stats": st.fixed_dictionaries({"cpu_percent": st.integers(0, 100).map(float)}),
    }),
    max_size=3, unique_by=lambda c: c["id"],
)
processes = st.lists(
    st.fixed_dictionaries({
        "pid": st.integers(1, 6),
        "container_id": st.sampled_from([None, *CONTAINERS]),
        "cpu_percent": st.integers(0, 50).map(float),
    }),
    max_size=5, unique_by=lambda p: p["pid"],
)
def connection_lists(pids: int, ephemeral_ports: int, max_size: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Listening sockets and established connections of processes 1..``pids``."""
    return st.lists(
        st.one_of(
            st.fixed_dictionaries({"protocol": st.just("tcp"), "local_address": st.sampled_from(["0.0.0.0", *IPS]),
                                   "local_port": st.sampled_from(PORTS), "state": st.just("LISTEN"),
                                   "pid": st.integers(1, pids)}),
            st.fixed_dictionaries({"protocol": st.just("tcp"), "local_address": st.just("10.9.9.9"),
                                   "local_port": st.integers(40000, 40000 + ephemeral_ports - 1),
                                   "remote_address": st.sampled_from([*IPS, "127.0.0.1"]),
                                   "remote_port": st.sampled_from(PORTS), "state": st.just("ESTABLISHED"),
                                   "pid": st.integers(1, pids)}),
        ),
        max_size=max_size,
    )


connections = connection_lists(pids=6, ephemeral_ports=4, max_size=5)


LATEST = 10_000
"""Seconds after ``T0`` of the latest report ``reports`` makes: each is received
then or later (a report dated after it was received stands at its receive time)."""


@st.composite
def reports(draw: Any, count: tuple[int, int] = (1, 8)) -> list[Report]:
    """Reports with pairwise distinct timestamps."""
    n = draw(st.integers(*count))
    times = draw(st.lists(st.integers(0, LATEST), min_size=n, max_size=n, unique=True))
    result = []
    for t in times:
        doc = {
            "agent_id": draw(st.sampled_from(AGENTS)),
            "hostname": draw(st.sampled_from(HOSTS)),
            "timestamp": datetime.fromtimestamp(T0 + t, UTC).isoformat().replace("+00:00", "Z"),
            "host_info": {"ip_addresses": draw(st.lists(st.sampled_from(IPS), max_size=2, unique=True)),
                          "cpu_info": {"usage": float(draw(st.integers(0, 100)))}},
            "docker_info": {"containers": draw(containers)},
            "processes_info": {"processes": [{k: v for k, v in p.items() if v is not None} for p in draw(processes)]},
            "network_info": {"connections": draw(connections)},
        }
        result.append(decode_report(doc))
    return result


def state(graph: TopologyGraph) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every view's nodes and edges (process groups included: diffs carry them too)."""
    snapshot, _ = graph.publish(T0)
    return ({n.id: n.as_dict() for view in View for n in snapshot.nodes(view)},
            {e.id: e.as_dict() for view in View for e in snapshot.edges(view)})


def build(sequence: list[Report], received_at: float = T0 + LATEST) -> TopologyGraph:
    graph = TopologyGraph()
    for report in sequence:
        graph.apply(report, received_at)
    return graph


@settings(max_examples=300, deadline=None)
@given(reports(), st.randoms(use_true_random=False))
def test_merging_does_not_depend_on_arrival_order(sequence: list[Report], random: Any) -> None:
    shuffled = list(sequence)
    random.shuffle(shuffled)
    assert state(build(sequence)) == state(build(shuffled))


@settings(max_examples=200, deadline=None)
@given(reports())
def test_each_agent_is_represented_by_its_newest_report(sequence: list[Report]) -> None:
    graph = build(sequence)
    newest = {}
    for report in sequence:
        if report.agent_id not in newest or report.timestamp > newest[report.agent_id].timestamp:
            newest[report.agent_id] = report
    assert {a: p.report_time for a, p in graph.partitions.items()} == {
        a: r.timestamp.timestamp() for a, r in newest.items()
    }
    assert state(graph) == state(build(list(newest.values())))


@settings(max_examples=200, deadline=None)
@given(reports(), st.lists(st.integers(0, 600), min_size=8, max_size=8), st.integers(60, 600))
def test_stale_removal_leaves_what_the_fresh_reports_alone_would_build(
    sequence: list[Report], arrivals: list[int], threshold: int
) -> None:
    graph = TopologyGraph()
    received = {}
    for report, arrival in zip(sequence, arrivals):
        if graph.apply(report, T0 + LATEST + arrival):
            received[report.agent_id] = (T0 + LATEST + arrival, report)
    now = T0 + LATEST + 600
    graph.expire(now, threshold)
    fresh = [r for (at, r) in received.values() if at >= now - threshold]
    assert set(graph.partitions) == {r.agent_id for r in fresh}
    assert state(graph) == state(build(fresh))


@settings(max_examples=200, deadline=None)
@given(reports(count=(1, 10)), st.lists(st.booleans(), min_size=10, max_size=10))
def test_applying_every_diff_to_the_first_snapshot_reproduces_the_last(
    sequence: list[Report], publish_after: list[bool]
) -> None:
    graph = TopologyGraph()
    nodes: dict[str, Any] = {}
    edges: dict[str, Any] = {}
    last_version = 0
    for report, publish in zip(sequence, publish_after):
        graph.apply(report, T0 + LATEST)
        if publish:
            _, diff = graph.publish(T0)
            if diff is not None:
                assert diff.previous_version == last_version
                last_version = diff.version
                diff.apply_to(nodes, edges)
    _, diff = graph.publish(T0)
    if diff is not None:
        diff.apply_to(nodes, edges)
    assert (nodes, edges) == state(graph)
