"""A host whose container engine does not answer its probe
(``docker_info.reachable`` false): the host node says so, and the containers
the engine last listed stay, in state unknown, until it answers again. They
vanished before (``docker_info`` with no containers looked like a host whose
containers were all removed), and those whose processes the probe still saw
came back as inferred containers, "running", a paused one too."""

from __future__ import annotations

from typing import Any

from tests.synthetic import host_report, iso
from trioscope.domain.topology import NodeKind, TopologyGraph, container_id, host_id, pod_id
from trioscope.wire import decode_report

T0 = 1_760_000_000.0
PROBLEM = "cannot connect to socket /run/docker.sock: Connection refused"
HOST = host_id("host-1")


def _report(seconds: float, *, containers: int = 3, cpu: float = 25.0, reachable: bool | None = None,
            listed: int | None = None) -> dict[str, Any]:
    """Host 1's report at ``T0 + seconds``; ``reachable`` False: its engine
    does not answer (the first ``listed`` containers still listed, as the
    probe does for a cycle); None: a probe from before the field."""
    document = host_report(1, timestamp=T0 + seconds, containers=containers, processes=30, connections=0, cpu=cpu)
    if reachable is False:
        kept = document["docker_info"]["containers"][:listed or 0]
        document["docker_info"] = {"containers": [{**c, "stats": None} for c in kept], "reachable": False,
                                   "problem": PROBLEM}
    elif reachable is True:
        document["docker_info"]["reachable"] = True
    return document


def _apply(graph: TopologyGraph, document: dict[str, Any], seconds: float) -> None:
    """Merged as signed by an enrolled probe (its containers offer controls)."""
    assert graph.apply(decode_report(document), T0 + seconds, enrolled=True)


def _containers(graph: TopologyGraph) -> dict[str, tuple[str, str, str | None, bool]]:
    """Each container node: (status, state, last state, whether it has metrics)."""
    return {n.id: (n.status, n.metadata["state"], n.metadata.get("last_state"), bool(n.metrics))
            for n in graph.nodes.values() if n.kind is NodeKind.CONTAINER}


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
    """The probe repeats its last listing for a cycle (``GRACE_CYCLES``), for
    servers that dropped them: no longer the engine's word on their state."""
    graph = TopologyGraph()
    _apply(graph, _report(0), 0)
    before = _containers(graph)
    _apply(graph, _report(15, reachable=False, listed=2), 15)
    assert _containers(graph) == {cid: ("unknown", "unknown", state, False) for cid, (_, state, _, _) in before.items()}
    _apply(graph, _report(30, reachable=False), 30)  # the cycle after: none listed
    assert _containers(graph) == {cid: ("unknown", "unknown", state, False) for cid, (_, state, _, _) in before.items()}


def _third() -> str:
    return host_report(1, timestamp=T0, containers=3, processes=0, connections=0)["docker_info"]["containers"][2]["id"]
