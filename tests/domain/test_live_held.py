"""Clients that hold part of a view (a filter, or ``auth.protect_reads``): the
reset a client started from plus every diff after it must leave it holding what
a fresh reset at the same version would give it, the same nodes and the same
edges, whatever its filter."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.domain.test_topology_properties import AGENTS, T0, reports
from tests.synthetic import host_report
import trioscope.domain.live._edge_index
from trioscope.domain.live import Filter, Visibility, diff_frame, reset_frame
from trioscope.domain.topology import TopologyDiff, TopologyGraph, TopologySnapshot, View
from trioscope.wire import Report, decode_report


@pytest.fixture(scope="module", autouse=True, params=[trioscope.domain.live._edge_index.SCANS_BEFORE_INDEX, 0],
                ids=["scans-first", "index-at-once"])
def _edge_lookups(request: pytest.FixtureRequest) -> Any:
    """Every test both ways: edges of nodes crossing a filter found by a scan, and from the index."""
    before = trioscope.domain.live._edge_index.SCANS_BEFORE_INDEX
    trioscope.domain.live._edge_index.SCANS_BEFORE_INDEX = request.param
    yield
    trioscope.domain.live._edge_index.SCANS_BEFORE_INDEX = before


class Client:
    """What a browser builds from its frames, strict about what each part may
    name: ``add`` only what it does not hold, ``update`` and ``remove`` only
    what it holds."""

    def __init__(self, reset: dict[str, Any]) -> None:
        assert reset["reset"] is True
        self.version: int = reset["version"]
        self.held: dict[str, dict[str, Any]] = {"nodes": dict(reset["nodes"]), "edges": dict(reset["edges"])}

    def apply(self, diff: dict[str, Any]) -> None:
        assert diff["previous_version"] == self.version
        for part, held in self.held.items():
            for item, value in diff["add"][part].items():
                assert item not in held, f"add of {item}, which the client holds"
                held[item] = value
            for item, value in diff["update"][part].items():
                assert item in held, f"update of {item}, which the client does not hold"
                held[item] = value
            for item in diff["remove"][part]:
                assert item in held, f"removal of {item}, which the client does not hold"
                del held[item]
        self.version = diff["version"]


def payload(frame: str) -> dict[str, Any]:
    message = orjson.loads(str(frame))
    assert message["type"] == "topology_update"
    return message["payload"]


FILTERS = [
    Filter(search="h1"),
    Filter(search="api"),
    Filter(labels={"app": "api"}),
    Filter(min_metrics={"cpu_usage": 50}),
    Filter(min_metrics={"cpu_percent": 20}),
    Filter(search="a1", min_metrics={"cpu_percent": 10}),
    Filter(ids=frozenset({"host:h0", "host:h2"})),
]
"""Filters that nodes of the generated reports start and stop matching as
their metrics, labels and probes change."""


@st.composite
def host_reports(draw: Any) -> list[Report]:
    """Reports of hosts 1-4 connected to each other, whose CPU (hosts) and load
    (containers) go over and under the thresholds of ``HOST_FILTERS`` from one
    report to the next, and whose containers and processes come and go."""
    result = []
    for at in range(draw(st.integers(2, 10))):
        index = draw(st.integers(1, 4))
        peers = draw(st.lists(st.sampled_from([p for p in range(1, 5) if p != index]), max_size=3, unique=True))
        result.append(decode_report(host_report(
            index, timestamp=T0 + at, containers=draw(st.integers(0, 2)), processes=draw(st.integers(1, 4)),
            connections=draw(st.sampled_from([2, 4, 8])), peers=peers, cpu=draw(st.sampled_from([10.0, 90.0])),
            container_load=draw(st.sampled_from([0.0, 20.0])),
        )))
    return result


HOST_FILTERS = [
    Filter(min_metrics={"cpu_usage": 50}),  # hosts
    Filter(min_metrics={"cpu_percent": 10}),  # containers
    Filter(search="worker-1"),  # processes
    Filter(search="host-2"),  # a host, and its containers and processes
]


def _versions(sequence: list[Report], publish_after: list[bool]) -> list[tuple[TopologySnapshot, TopologyDiff | None]]:
    """The empty version, then each one published (after the reports marked, and at the end) with its diff."""
    graph = TopologyGraph()
    versions: list[tuple[TopologySnapshot, TopologyDiff | None]] = [(graph.publish(T0)[0], None)]
    for report, publish in [*zip(sequence, publish_after, strict=False), (None, True)]:
        if report is not None:
            graph.apply(report, T0)
        if publish:
            snapshot, diff = graph.publish(T0)
            if diff is not None:
                versions.append((snapshot, diff))
    return versions


def _check_client(versions: list[tuple[TopologySnapshot, TopologyDiff | None]], merge: list[bool], start: int,
                  view: View | None, flt: Filter, agents: frozenset[str] | None) -> None:
    """A client connects at ``versions[start]`` and follows the rest; after
    each diff it holds what a fresh reset gives."""
    def visibility() -> Visibility:  # agents: those a protected client may see; None: every one
        return Visibility(agents.__contains__) if agents is not None else Visibility()

    start = min(start, len(versions) - 1)
    held = visibility()
    client = Client(payload(reset_frame(versions[start][0], view, flt, held)))
    # The hub merges the versions published within one interval into one diff.
    updates: list[tuple[TopologySnapshot, TopologyDiff]] = []
    for (snapshot, diff), merged in zip(versions[start + 1:], merge, strict=False):
        assert diff is not None
        if merged and updates:
            updates[-1] = (snapshot, updates[-1][1].then(diff))
        else:
            updates.append((snapshot, diff))
    for snapshot, diff in updates:
        client.apply(payload(diff_frame(diff, view, flt, held, snapshot=snapshot)))
        fresh = Client(payload(reset_frame(snapshot, view, flt, visibility())))
        assert client.version == fresh.version
        assert client.held == fresh.held


merges = st.lists(st.booleans(), min_size=11, max_size=11)  # one per version at most
publishes = st.lists(st.booleans(), min_size=10, max_size=10)
views = st.sampled_from([None, *View])


@settings(max_examples=300, deadline=None)
@given(sequence=reports(count=(2, 10)), publish_after=publishes, merge=merges, start=st.integers(0, 10), view=views,
       flt=st.sampled_from(FILTERS), agents=st.none() | st.frozensets(st.sampled_from(AGENTS)))
def test_reset_and_diffs_add_up_to_a_fresh_reset_for_every_filter(
    sequence: list[Report], publish_after: list[bool], merge: list[bool], start: int, view: View | None,
    flt: Filter, agents: frozenset[str] | None,
) -> None:
    _check_client(_versions(sequence, publish_after), merge, start, view, flt, agents)


# Weighted toward the hosts view and the hosts' CPU filter: there, edges join
# nodes that match and nodes that do not, and nodes cross the threshold.
@settings(max_examples=300, deadline=None)
@given(sequence=host_reports(), publish_after=publishes, merge=merges, start=st.integers(0, 3),
       view=st.sampled_from([View.HOSTS, View.HOSTS, None, View.CONTAINERS, View.PROCESSES]),
       flt=st.sampled_from([HOST_FILTERS[0], *HOST_FILTERS]),
       agents=st.none() | st.frozensets(st.sampled_from([f"agent-{i}" for i in range(1, 5)])))
def test_reset_and_diffs_add_up_to_a_fresh_reset_as_hosts_start_and_stop_matching(
    sequence: list[Report], publish_after: list[bool], merge: list[bool], start: int, view: View | None,
    flt: Filter, agents: frozenset[str] | None,
) -> None:
    _check_client(_versions(sequence, publish_after), merge, start, view, flt, agents)


def _report(index: int, cpu: float, peers: tuple[int, ...], at: float, connections: int = 4) -> Report:
    return decode_report(host_report(index, timestamp=T0 + at, containers=0, processes=3, connections=connections,
                                     peers=peers, cpu=cpu))


def _edge(source: int, target: int) -> str:
    return f"host:host-{source}->host:host-{target}"


def test_a_filtered_client_holds_the_nodes_that_match_and_the_edges_between_them():
    """Hosts start and stop matching a CPU filter while most edges between
    them do not change: each diff takes the client to what a reset gives."""
    graph = TopologyGraph()
    flt = Filter(min_metrics={"cpu_usage": 50})
    graph.apply(_report(1, 80, (2,), 0), T0)
    graph.apply(_report(2, 10, (3,), 0), T0)
    graph.apply(_report(3, 10, (), 0), T0)
    snapshot, _ = graph.publish(T0)
    assert {e.id for e in snapshot.edges(View.HOSTS)} == {_edge(1, 2), _edge(2, 3)}
    held = Visibility()
    client = Client(payload(reset_frame(snapshot, View.HOSTS, flt, held)))
    assert (set(client.held["nodes"]), set(client.held["edges"])) == ({"host:host-1"}, set())

    def step(*reports: Report) -> tuple[dict[str, Any], TopologyDiff]:
        for report in reports:
            graph.apply(report, T0)
        snapshot, diff = graph.publish(T0)
        assert diff is not None
        frame = payload(diff_frame(diff, View.HOSTS, flt, held, snapshot=snapshot))
        client.apply(frame)
        assert client.held == Client(payload(reset_frame(snapshot, View.HOSTS, flt))).held
        return frame, diff

    # Host 3 connects to host 1 and starts matching: it is new to the client,
    # with its new edge to host 1; the edge 2->3, of a host it does not hold, is not sent.
    frame, _ = step(_report(3, 90, (1,), 1))
    assert set(frame["add"]["nodes"]) == {"host:host-3"} and frame["update"]["nodes"] == {}
    assert set(frame["add"]["edges"]) == {_edge(3, 1)}
    # Host 2 starts matching: added, with its edge from 1, which the diff does
    # not carry (it did not change), and its edge to 3, which the diff carries
    # as updated (more connections) but is new to the client.
    frame, diff = step(_report(2, 90, (3,), 2, connections=8))
    assert _edge(2, 3) in diff.edges_updated and _edge(1, 2) not in diff.edges_updated
    assert set(frame["add"]["nodes"]) == {"host:host-2"} and frame["update"]["nodes"] == {}
    assert set(frame["add"]["edges"]) == {_edge(1, 2), _edge(2, 3)} and frame["update"]["edges"] == {}
    # Host 1 stops matching: it goes, and so do its edges, though they are still there.
    frame, _ = step(_report(1, 10, (2,), 3))
    assert frame["remove"]["nodes"] == ["host:host-1"]
    assert set(frame["remove"]["edges"]) == {_edge(1, 2), _edge(3, 1)}
    assert set(client.held["nodes"]) == {"host:host-2", "host:host-3"}
    assert set(client.held["edges"]) == {_edge(2, 3)}


def test_a_visibility_without_may_see_lets_every_node_through():
    graph = TopologyGraph()
    graph.apply(_report(1, 80, (), 0), T0)
    snapshot, _ = graph.publish(T0)
    everyone, nobody = Visibility(), Visibility(lambda agent: False)
    assert all(everyone.node(n) and not nobody.node(n) for n in snapshot.nodes())
    assert everyone.may_see("any agent")
    assert set(payload(reset_frame(snapshot, None, Filter(), everyone))["nodes"]) == everyone.shown
    assert everyone.shown == {n.id for n in snapshot.nodes()}


def _named(index: int, name: str, peers: tuple[int, ...], at: float) -> Report:
    """Host ``index``'s report under host name ``name`` (what a probe may choose)."""
    document = host_report(index, timestamp=T0 + at, containers=0, processes=3, connections=4, peers=peers)
    document["hostname"] = document["host_info"]["hostname"] = name
    return decode_report(document)


def test_host_names_holding_an_edges_arrow_neither_merge_two_edges_nor_keep_a_removed_one():
    """An edge id is ``<source>-><target>``: host ``e1->host:e2``'s edge to
    ``e3`` and ``e1``'s to ``e2->host:e3`` had one id (one of them hidden from
    every listing and live client), and an edge read back from its id by its
    first ``->`` had the wrong ends, so a filtered client never had it removed."""
    names = {1: "e1", 2: "e2->host:e3", 3: "e1->host:e2", 4: "e3"}
    graph = TopologyGraph()
    for index, peers in ((1, (2,)), (2, ()), (3, (4,)), (4, ())):
        graph.apply(_named(index, names[index], peers, 0), T0)
    snapshot, _ = graph.publish(T0)
    edges = list(snapshot.edges(View.HOSTS))
    assert len(edges) == 2 and len({e.id for e in edges}) == 2, [e.id for e in edges]
    assert all(e.id.count("->") == 1 for e in edges)

    flt = Filter(search="e")
    held = Visibility()
    client = Client(payload(reset_frame(snapshot, View.HOSTS, flt, held)))
    assert len(client.held["edges"]) == 2
    graph.apply(_named(3, names[3], (), 1), T0)  # e1->host:e2's connection goes
    snapshot, diff = graph.publish(T0)
    assert diff is not None
    client.apply(payload(diff_frame(diff, View.HOSTS, flt, held, snapshot=snapshot)))
    assert client.held == Client(payload(reset_frame(snapshot, View.HOSTS, flt))).held
    assert len(client.held["edges"]) == 1


def test_a_reset_of_part_of_a_view_says_its_time_as_a_whole_one_does():
    graph = TopologyGraph()
    graph.apply(_report(1, 80, (), 0), T0)
    snapshot, _ = graph.publish(T0)
    whole = payload(reset_frame(snapshot, View.HOSTS))
    for part in (payload(reset_frame(snapshot, View.HOSTS, Filter(search="host"))),
                 payload(reset_frame(snapshot, View.HOSTS, None, Visibility()))):
        assert set(part) == set(whole) and part["timestamp"] == whole["timestamp"], part
