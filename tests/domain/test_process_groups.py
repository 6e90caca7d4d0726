"""The processes-by-name view: processes of one name on one host as one node,
kept up to date by the graph, and the connections between groups."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.domain.test_topology import report
from tests.domain.test_topology_properties import (
    AGENTS, HOSTS, IPS, T0, connection_lists, connections, containers,
)
from trioscope.domain.live import diff_frame, reset_frame
from trioscope.wire import Report, decode_report
from trioscope.domain.topology import (
    NodeKind,
    TopologyGraph,
    TopologySnapshot,
    View,
    host_id,
    process_group_id,
    process_group_node,
    process_id,
)

KERNEL = [{"pid": 2, "ppid": 0, "name": "kthreadd"}, {"pid": 9, "ppid": 2, "name": "kworker/0:1"}]


def nginx_and_redis(cpu: float = 1.0) -> list[dict[str, Any]]:
    return [
        {"pid": 100, "name": "nginx", "cmdline": "nginx", "cpu_percent": cpu, "memory_rss_bytes": 10 * 1048576,
         "status": "sleeping"},
        {"pid": 101, "name": "nginx", "cmdline": "nginx", "cpu_percent": 2.0, "memory_rss_bytes": 20 * 1048576,
         "status": "running"},
        {"pid": 102, "name": "nginx", "cmdline": "nginx", "cpu_percent": 4.0, "memory_rss_bytes": 30 * 1048576,
         "status": "running"},
        {"pid": 200, "name": "redis", "cmdline": "redis-server", "cpu_percent": 0.5},
    ]


def test_processes_of_one_name_on_one_host_are_one_node_with_their_sums():
    graph = TopologyGraph()
    graph.apply(report("a", "h1", processes=[*nginx_and_redis(), *KERNEL]), T0)
    snapshot, _ = graph.publish(T0)
    groups = {n.id: n for n in snapshot.nodes(View.PROCESSES_BY_NAME)}
    assert set(groups) == {process_group_id("h1", "nginx"), process_group_id("h1", "redis")}  # no kernel threads
    nginx = groups[process_group_id("h1", "nginx")].as_dict()
    assert nginx["type"] == "process_group" and nginx["label"] == "nginx"
    assert nginx["parent"] == nginx["host"] == host_id("h1")
    assert nginx["status"] == "running"  # two of three
    assert nginx["metadata"] == {"name": "nginx", "pids": [100, 101, 102], "statuses": {"running": 2, "sleeping": 1}}
    assert nginx["metrics"] == {"cpu_percent": 7.0, "cpu_percent_max": 4.0, "memory_mb": 60.0, "processes": 3.0}
    # The processes view still has every process, kernel threads too.
    assert len(list(snapshot.nodes(View.PROCESSES))) == 6


def test_the_whole_topology_has_no_process_groups():
    graph = TopologyGraph()
    graph.apply(report("a", "h1", processes=nginx_and_redis()), T0)
    snapshot, diff = graph.publish(T0)
    assert diff is not None and process_group_id("h1", "nginx") in diff.nodes_added
    assert all(n.kind is not NodeKind.PROCESS_GROUP for n in snapshot.nodes())
    assert b"process_group" not in snapshot.json()
    assert snapshot.counts()["nodes"] == len(list(snapshot.nodes()))
    assert b"process_group" not in orjson.dumps(orjson.loads(str(diff_frame(diff, None))))
    grouped = orjson.loads(str(reset_frame(snapshot, View.PROCESSES_BY_NAME)))["payload"]
    assert grouped["view"] == "processes-by-name"
    assert set(grouped["nodes"]) == {process_group_id("h1", "nginx"), process_group_id("h1", "redis")}


def two_hosts() -> list[Report]:
    """h1's three nginx processes each connect to h2's redis (listening on
    10.0.0.2:6379), and one of them to nginx on h1 itself."""
    server = report("b", "h2", ips=["10.0.0.2"], processes=[{"pid": 200, "name": "redis", "cmdline": "redis"}],
                    connections=[{"protocol": "tcp", "local_address": "0.0.0.0", "local_port": 6379,
                                  "state": "LISTEN", "pid": 200}])
    clients = [{"protocol": "tcp", "local_address": "10.0.0.1", "local_port": 40000 + n, "remote_address": "10.0.0.2",
                "remote_port": 6379, "state": "ESTABLISHED", "pid": 100 + n} for n in range(3)]
    within = [{"protocol": "tcp", "local_address": "0.0.0.0", "local_port": 80, "state": "LISTEN", "pid": 102},
              {"protocol": "tcp", "local_address": "127.0.0.1", "local_port": 41000, "remote_address": "127.0.0.1",
               "remote_port": 80, "state": "ESTABLISHED", "pid": 100}]
    client = report("a", "h1", ips=["10.0.0.1"], processes=nginx_and_redis()[:3], connections=[*clients, *within])
    return [server, client]


def test_connections_between_groups_are_one_edge_with_their_count_and_none_within_a_group():
    graph = TopologyGraph()
    for r in two_hosts():
        graph.apply(r, T0)
    snapshot, _ = graph.publish(T0)
    process_edges = [e.as_dict() for e in snapshot.edges(View.PROCESSES)]
    # 100, 101, 102 -> redis; 100 -> 102
    assert len(process_edges) == 4 and all(e["connections"] == 1 for e in process_edges)
    edges = [e.as_dict() for e in snapshot.edges(View.PROCESSES_BY_NAME)]
    nginx, redis = process_group_id("h1", "nginx"), process_group_id("h2", "redis")
    assert edges == [{"id": f"{nginx}->{redis}", "source": nginx, "target": redis, "type": "connection",
                      "connections": 3}]


def test_a_process_that_changes_its_name_moves_group_and_an_empty_group_goes():
    graph = TopologyGraph()
    graph.apply(report("a", "h1", processes=nginx_and_redis()), T0)
    graph.publish(T0)
    renamed = [{**p, "name": "redis"} if p["pid"] == 100 else p for p in nginx_and_redis()]
    graph.apply(report("a", "h1", T0 + 15, processes=renamed), T0 + 15)
    snapshot, diff = graph.publish(T0 + 15)
    assert diff is not None
    redis = snapshot.node(process_group_id("h1", "redis"))
    assert redis is not None and redis.metadata["pids"] == [100, 200]
    assert set(diff.nodes_updated) >= {process_group_id("h1", "nginx"), process_group_id("h1", "redis")}

    graph.apply(report("a", "h1", T0 + 30, processes=[p for p in renamed if p["name"] == "redis"]), T0 + 30)
    snapshot, diff = graph.publish(T0 + 30)
    assert diff is not None and process_group_id("h1", "nginx") in diff.nodes_removed
    assert [n.id for n in snapshot.nodes(View.PROCESSES_BY_NAME)] == [process_group_id("h1", "redis")]


def test_a_process_becoming_a_kernel_thread_leaves_its_group():
    graph = TopologyGraph()
    graph.apply(report("a", "h1", processes=[{"pid": 9, "ppid": 2, "name": "kworker", "cmdline": "x"}]), T0)
    snapshot, _ = graph.publish(T0)
    assert [n.id for n in snapshot.nodes(View.PROCESSES_BY_NAME)] == [process_group_id("h1", "kworker")]
    graph.apply(report("a", "h1", T0 + 15, processes=[{"pid": 9, "ppid": 2, "name": "kworker"}]), T0 + 15)
    snapshot, _ = graph.publish(T0 + 15)
    assert list(snapshot.nodes(View.PROCESSES_BY_NAME)) == []
    assert snapshot.node(process_id("h1", 9)) is not None


# ---- properties: grouping commutes with merging and diffing ---------------------------------

named_processes = st.lists(
    st.fixed_dictionaries({
        "pid": st.integers(1, 8),
        "ppid": st.sampled_from([0, 1, 2]),
        "name": st.sampled_from(["", "api", "db", "worker"]),
        "cmdline": st.sampled_from(["", "run"]),
        "status": st.sampled_from(["sleeping", "running", "zombie"]),
        "container_id": st.sampled_from([None, "c" * 64]),
        "cpu_percent": st.integers(0, 50).map(float),
        "memory_rss_bytes": st.integers(0, 4).map(lambda n: n * 1048576),
    }),
    max_size=6, unique_by=lambda p: p["pid"],
)
process_connections = connection_lists(pids=8, ephemeral_ports=6, max_size=8)


@st.composite
def named_reports(draw: Any) -> list[Report]:
    """Reports whose processes share names (and some are kernel threads), from
    agents that sometimes describe the same host."""
    n = draw(st.integers(1, 8))
    times = draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True))
    result = []
    for t in times:
        result.append(decode_report({
            "agent_id": draw(st.sampled_from(AGENTS)),
            "hostname": draw(st.sampled_from(HOSTS)),
            "timestamp": datetime.fromtimestamp(T0 + t, UTC).isoformat().replace("+00:00", "Z"),
            "host_info": {"ip_addresses": draw(st.lists(st.sampled_from(IPS), max_size=2, unique=True))},
            "docker_info": {"containers": draw(containers)},
            "processes_info": {"processes": [{k: v for k, v in p.items() if v is not None}
                                             for p in draw(named_processes)]},
            "network_info": {"connections": draw(st.one_of(process_connections, connections))},
        }))
    return result


def grouped(snapshot: TopologySnapshot) -> tuple[dict[str, Any], dict[str, Any]]:
    """The processes view of ``snapshot`` grouped from scratch: what the
    processes-by-name view should hold."""
    members: dict[str, list[Any]] = defaultdict(list)
    for process in snapshot.nodes(View.PROCESSES):
        if not process.metadata.get("kernel_thread"):
            name = process.metadata.get("name") or process.label
            members[process_group_id(process.host.removeprefix("host:"), name)].append(process)
    group = {p.id: group_id for group_id, processes in members.items() for p in processes}
    nodes = {group_id: process_group_node(group_id, processes).as_dict() for group_id, processes in members.items()}
    counts: Counter[tuple[str, str]] = Counter()
    for edge in snapshot.edges(View.PROCESSES):
        source, target = group.get(edge.source), group.get(edge.target)
        if source is not None and target is not None and source != target:
            counts[(source, target)] += edge.connections
    edges = {f"{s}->{t}": {"id": f"{s}->{t}", "source": s, "target": t, "type": "connection", "connections": c}
             for (s, t), c in counts.items()}
    return nodes, edges


def view_of(snapshot: TopologySnapshot) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({n.id: n.as_dict() for n in snapshot.nodes(View.PROCESSES_BY_NAME)},
            {e.id: e.as_dict() for e in snapshot.edges(View.PROCESSES_BY_NAME)})


def only_groups(state: tuple[dict[str, Any], dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    nodes, edges = state
    return ({i: n for i, n in nodes.items() if n["type"] == "process_group"},
            {i: e for i, e in edges.items() if e["source"].startswith("process_group:")})


@settings(max_examples=300, deadline=None)
@given(named_reports(), st.lists(st.booleans(), min_size=8, max_size=8))
def test_diffing_then_grouping_equals_grouping_then_diffing(sequence: list[Report], publish_after: list[bool]) -> None:
    graph = TopologyGraph()
    held: tuple[dict[str, Any], dict[str, Any]] = ({}, {})  # what a client of every view holds
    for report_, publish in zip(sequence, [*publish_after[:len(sequence) - 1], True]):
        graph.apply(report_, T0)
        if publish:
            snapshot, diff = graph.publish(T0)
            if diff is not None:
                diff.apply_to(*held)
            # The grouped view, as kept by the graph and by its diffs, is the
            # processes view grouped from scratch.
            assert view_of(snapshot) == grouped(snapshot) == only_groups(held)


@settings(max_examples=200, deadline=None)
@given(named_reports())
def test_group_counts_add_up_to_the_processes_and_their_connections(sequence: list[Report]) -> None:
    graph = TopologyGraph()
    for report_ in sequence:
        graph.apply(report_, T0)
    snapshot, _ = graph.publish(T0)
    processes = list(snapshot.nodes(View.PROCESSES))
    groups = list(snapshot.nodes(View.PROCESSES_BY_NAME))
    user = [p for p in processes if not p.metadata.get("kernel_thread")]
    assert sum(g.metrics["processes"] for g in groups) == len(user)
    assert sorted(pid for g in groups for pid in g.metadata["pids"]) == sorted(p.metadata["pid"] for p in user)
    assert sum(sum(g.metadata["statuses"].values()) for g in groups) == len(user)
    group_of = {p.id: g.id for g in groups for p in user
                if p.host == g.host and p.metadata["pid"] in g.metadata["pids"]}
    between = sum(e.connections for e in snapshot.edges(View.PROCESSES)
                  if e.source in group_of and e.target in group_of and group_of[e.source] != group_of[e.target])
    assert sum(e.connections for e in snapshot.edges(View.PROCESSES_BY_NAME)) == between


def test_groups_of_hosts_whose_names_hold_colons_stay_apart():
    """Host ``a:b``'s ``worker`` and host ``a``'s ``b:worker`` are two groups (their ids were one)."""
    graph = TopologyGraph()
    graph.apply(report("one", "a:b", processes=[{"pid": 1000, "name": "worker", "cmdline": "worker"}]), T0)
    graph.apply(report("two", "a", processes=[{"pid": 1001, "name": "b:worker", "cmdline": "b:worker"}]), T0)
    snapshot, _ = graph.publish(T0)
    groups = {n.id: n for n in snapshot.nodes(View.PROCESSES_BY_NAME)}
    assert len(groups) == 2
    assert {(n.host, n.label, tuple(n.metadata["pids"])) for n in groups.values()} == {
        (host_id("a:b"), "worker", (1000,)), (host_id("a"), "b:worker", (1001,))}
    assert process_group_id("a:b", "worker") in groups and process_group_id("a", "b:worker") in groups
