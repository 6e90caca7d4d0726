"""A host whose container engine does not answer its probe
(``docker_info.reachable`` false): the host node says so, and the containers
the engine last listed stay, in state unknown, until it answers again. They
vanished before (``docker_info`` with no containers looked like a host whose
containers were all removed), and those whose processes the probe still saw
came back as inferred containers, "running", a paused one too."""

from __future__ import annotations

from typing import Any

from tests.synthetic import host_ip, host_report, iso
from trioscope.domain.topology import NodeKind, TopologyGraph, View, container_id, host_id, pod_id
from trioscope.wire import KEEP_LISTED_SECONDS, decode_report

T0 = 1_760_000_000.0
PROBLEM = "cannot connect to socket /run/docker.sock: Connection refused"
HOST = host_id("host-1")


def _report(seconds: float, *, containers: int = 3, cpu: float = 25.0, reachable: bool | None = None,
            listed: int | None = None, listed_at: float | None = None) -> dict[str, Any]:
    """Host 1's report at ``T0 + seconds``; ``reachable`` False: its engine
    does not answer (the first ``listed`` containers still listed, as the
    probe did for a cycle; with ``listed_at``, when they were, as it does
    now); None: a probe from before the field."""
    document = host_report(1, timestamp=T0 + seconds, containers=containers, processes=30, connections=0, cpu=cpu)
    if reachable is False:
        # As listed then (a creation time as the probe reckoned it then, too).
        then = document if listed_at is None else host_report(1, timestamp=T0 + listed_at, containers=containers,
                                                             processes=0, connections=0)
        kept = then["docker_info"]["containers"][:listed or 0]
        document["docker_info"] = {"containers": [{**c, "stats": None} for c in kept], "reachable": False,
                                   "problem": PROBLEM}
        if listed_at is not None:
            document["docker_info"]["listed_at"] = iso(T0 + listed_at)
    elif reachable is True:
        document["docker_info"]["reachable"] = True
    return document


def _apply(graph: TopologyGraph, document: dict[str, Any], seconds: float) -> None:
    """Merged as signed by an enrolled probe (its containers offer controls)."""
    assert graph.apply(decode_report(document), T0 + seconds, enrolled=True)


def _containers(graph: TopologyGraph) -> dict[str, tuple[str, str, str | None, bool]]:
    """Each container node of host 1: (status, state, last state, whether it has metrics)."""
    return {n.id: (n.status, n.metadata["state"], n.metadata.get("last_state"), bool(n.metrics))
            for n in graph.nodes.values() if n.kind is NodeKind.CONTAINER and n.host == HOST}


def test_a_report_says_its_engine_state_on_the_host_node_old_probes_reachable() -> None:
    graph = TopologyGraph()
    _apply(graph, _report(0), 0)  # no "reachable": a probe from before it
    assert graph.nodes[HOST].metadata["container_engine"] == "reachable"
    assert graph.nodes[HOST].as_dict()["metadata"]["container_engine"] == "reachable"
    no_engine = _report(15)
    del no_engine["docker_info"]
    _apply(graph, no_engine, 15)
    assert "container_engine" not in graph.nodes[HOST].metadata


def test_the_containers_of_a_host_whose_engine_does_not_answer_are_kept_unknown_until_it_answers() -> None:
    graph = TopologyGraph()
    _apply(graph, _report(0, reachable=True), 0)
    before = _containers(graph)
    assert sorted(state for _, state, _, _ in before.values()) == ["paused", "running", "running"]
    pod = pod_id("prod", "web-1-0")
    assert graph.nodes[pod].status == "paused"

    _apply(graph, _report(15, reachable=False), 15)
    host = graph.nodes[HOST]
    assert (host.metadata["container_engine"], host.metadata["container_engine_problem"]) == ("unreachable", PROBLEM)
    assert host.as_dict()["metadata"]["container_engine"] == "unreachable"
    assert host.as_dict()["metadata"]["container_engine_problem"] == PROBLEM  # in listings too: why
    # Every container as last known: none dropped, none "running" as inferred from its processes.
    assert _containers(graph) == {cid: ("unknown", "unknown", state, False) for cid, (_, state, _, _) in before.items()}
    assert all("inferred" not in graph.nodes[cid].metadata for cid in before)
    assert graph.nodes[pod].status == "unknown"  # still the pod's, as its container is
    stale = graph.nodes[next(iter(before))]
    assert stale.metadata["controls"] == [] and graph.controllers(stale.id) == ("agent-1",)  # none offered
    assert stale.last_seen == T0  # when its engine last listed it

    # Later reports of the outage change only metrics: merged by the short path.
    partition = graph.partitions["agent-1"]
    _apply(graph, _report(30, reachable=False, cpu=60.0), 30)
    assert graph.partitions["agent-1"].reps is partition.reps
    assert _containers(graph) == {cid: ("unknown", "unknown", state, False) for cid, (_, state, _, _) in before.items()}
    assert graph.nodes[HOST].metrics["cpu_usage"] == 60.0

    # The engine answers again, one container removed meanwhile: as it lists them.
    _apply(graph, _report(45, containers=2, reachable=True), 45)
    assert graph.nodes[HOST].metadata["container_engine"] == "reachable"
    after = _containers(graph)
    assert sorted(after) == sorted(cid for cid in before if cid != container_id(_third()))
    assert all(after[cid] == (before[cid][0], before[cid][1], None, before[cid][3]) for cid in after)


def test_the_containers_a_probe_lists_once_more_as_its_engine_fails_are_unknown_too() -> None:
    """A probe from before ``listed_at`` repeated its last listing for a
    cycle, then none: no longer the engine's word on their state."""
    graph = TopologyGraph()
    _apply(graph, _report(0), 0)
    before = _containers(graph)
    _apply(graph, _report(15, reachable=False, listed=2), 15)
    assert _containers(graph) == {cid: ("unknown", "unknown", state, False) for cid, (_, state, _, _) in before.items()}
    _apply(graph, _report(30, reachable=False), 30)  # the cycle after: none listed
    assert _containers(graph) == {cid: ("unknown", "unknown", state, False) for cid, (_, state, _, _) in before.items()}


def _third() -> str:
    return host_report(1, timestamp=T0, containers=3, processes=0, connections=0)["docker_info"]["containers"][2]["id"]


def _client(seconds: float) -> dict[str, Any]:
    """Host 2's report: a process in its container connects to host 1's first
    container's own address, another to the port host 1 publishes for its second."""
    document = host_report(2, timestamp=T0 + seconds, containers=1, processes=3, connections=0)
    document["network_info"]["connections"] += [
        {"protocol": "tcp", "local_address": host_ip(2), "local_port": 41000 + n, "remote_address": address,
         "remote_port": port, "state": "ESTABLISHED", "pid": 1000 + n}
        for n, (address, port) in enumerate([("172.17.1.2", 8080), (host_ip(1), 30001)])]
    return document


def _reached(graph: TopologyGraph, seconds: float) -> set[str]:
    """The containers host 2's container has edges to."""
    snapshot, _ = graph.publish(T0 + seconds)
    return {target for _, target in snapshot.edges_of(View.CONTAINERS)}


def _ids(graph: TopologyGraph) -> list[str]:
    return [n.id for n in graph.nodes.values() if n.kind is NodeKind.CONTAINER and n.host == HOST]


def test_the_containers_a_probe_repeats_through_an_outage_keep_their_addresses_and_published_ports() -> None:
    """Connections to a kept container's own address, or to a port published
    for it, reach it: the report lists it (with ``listed_at``) as it did."""
    graph = TopologyGraph()
    _apply(graph, _report(0, reachable=True), 0)
    _apply(graph, _client(0), 0)
    first, second = _ids(graph)[:2]
    assert _reached(graph, 0) == {first, second}
    before = _containers(graph)

    for seconds in (15, 30, 45):
        _apply(graph, _report(seconds, reachable=False, listed=3, listed_at=0, cpu=seconds), seconds)
        _apply(graph, _client(seconds), seconds)
        assert _reached(graph, seconds) == {first, second}
        assert _containers(graph) == {cid: ("unknown", "unknown", state, False)
                                      for cid, (_, state, _, _) in before.items()}
        assert {graph.nodes[cid].last_seen for cid in before} == {T0}  # when its engine last listed it
    partition = graph.partitions["agent-1"]
    _apply(graph, _report(60, reachable=False, listed=3, listed_at=0, cpu=60), 60)
    assert graph.partitions["agent-1"].reps is partition.reps  # merged by the short path
    assert all(graph.partitions["agent-1"].nodes[cid] is partition.nodes[cid] for cid in before)  # not built again


def test_a_server_that_starts_during_an_outage_shows_the_containers_its_first_report_repeats() -> None:
    """As a restarted server, or a replica reading the bus's newest reports:
    it never saw the engine answer."""
    graph = TopologyGraph()
    _apply(graph, _report(600, reachable=False, listed=3, listed_at=0), 600)
    _apply(graph, _client(600), 600)
    assert graph.nodes[HOST].metadata["container_engine"] == "unreachable"
    kept = _containers(graph)
    assert sorted(kept.values()) == [("unknown", "unknown", "paused", False)] + [
        ("unknown", "unknown", "running", False)] * 2
    assert {graph.nodes[cid].last_seen for cid in kept} == {T0}
    assert _reached(graph, 600) == set(_ids(graph)[:2])


def test_a_probe_that_no_longer_repeats_its_listing_after_a_day_leaves_the_server_none_to_keep() -> None:
    graph = TopologyGraph()
    _apply(graph, _report(0, reachable=True), 0)
    _apply(graph, _report(15, reachable=False, listed=3, listed_at=0), 15)
    late = KEEP_LISTED_SECONDS + 15
    _apply(graph, _report(late, reachable=False, listed_at=0), late)
    # As on a host without an engine: the containers whose processes run, inferred from their cgroups.
    assert {graph.nodes[cid].metadata.get("inferred") for cid in _ids(graph)} == {True}


def test_an_older_probes_containers_are_kept_by_the_server_a_day_after_they_were_listed() -> None:
    """A probe from before ``listed_at`` repeats none (after one cycle), nor
    does one started during the outage: the server keeps those of the
    agent's earlier reports, for as long as a probe would."""
    graph = TopologyGraph()
    _apply(graph, _report(0, reachable=True), 0)
    before = _containers(graph)
    for seconds in (15, 30, KEEP_LISTED_SECONDS - 15, KEEP_LISTED_SECONDS):
        _apply(graph, _report(seconds, reachable=False), seconds)
        assert _containers(graph) == {cid: ("unknown", "unknown", state, False)
                                      for cid, (_, state, _, _) in before.items()}
        assert {graph.nodes[cid].last_seen for cid in before} == {T0}
    late = KEEP_LISTED_SECONDS + 15
    _apply(graph, _report(late, reachable=False), late)
    assert {graph.nodes[cid].metadata.get("inferred") for cid in _ids(graph)} == {True}
    assert sorted(graph.nodes[cid].status for cid in _ids(graph)) == ["running"] * 3


def test_a_listing_older_than_a_probe_keeps_one_shows_no_older_time() -> None:
    """A probe whose clock was set right since its engine last listed (years
    behind at boot) said a listing years old: its containers showed as last
    seen then. The server shows them as last seen a day before at most."""
    graph = TopologyGraph()
    years = 3 * 365 * 86400.0
    _apply(graph, _report(600, reachable=False, listed=3, listed_at=-years), 600)
    assert {graph.nodes[cid].last_seen for cid in _containers(graph)} == {T0 + 600 - KEEP_LISTED_SECONDS}
