"""The merge of a report whose structure did not change (only metrics, times,
statuses): built and merged by the short path, with the same graph, diffs and
versions as the full path.

The reference graph takes the full path for every report: partitions built
from scratch, ``_refresh`` replaced by the full replacement, and every process
group, pod and service built from its members in full (never ``_regroup``). Sequences mix
reports of new structure with repeats of an agent's last report whose metrics,
times, statuses and thread counts changed.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.domain.test_topology_properties import AGENTS, HOSTS, IPS, T0, connections, containers, processes
from tests.synthetic import host_report
from trioscope.domain.topology import (NodeKind, Partition, TopologyDiff, TopologyGraph, View, build_partition,
                                       report_shape)
from trioscope.wire import decode_report


class FullPathGraph(TopologyGraph):
    """Merges every report as if its structure had changed."""

    def _refresh(self, agent: str, new: Partition) -> None:
        self._rebuild(agent, self.partitions[agent], new)

    def _regroup(self, kind: NodeKind, group_id: str) -> bool:
        return False  # every group built from its members in full


def _stamp(seconds: int) -> str:
    return datetime.fromtimestamp(T0 + seconds, UTC).isoformat().replace("+00:00", "Z")


@st.composite
def documents(draw: Any) -> dict[str, Any]:
    procs = draw(processes)
    for p in procs:
        p["status"] = draw(st.sampled_from(["", "sleeping", "running"]))
        p["threads"] = draw(st.integers(0, 2))
        p["name"] = draw(st.sampled_from(["", "web", "db"]))
    return {
        "agent_id": draw(st.sampled_from(AGENTS)),
        "hostname": draw(st.sampled_from(HOSTS)),
        "host_info": {"ip_addresses": draw(st.lists(st.sampled_from(IPS), max_size=2, unique=True)),
                      "cpu_info": {"usage": float(draw(st.integers(0, 100)))}},
        "docker_info": {"containers": draw(containers)},
        "processes_info": {"processes": [{k: v for k, v in p.items() if v is not None} for p in procs]},
        "network_info": {"connections": draw(connections)},
    }


@st.composite
def metrics_changed(draw: Any, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with other metrics and, now and then, another status (a container's state) or thread count."""
    changed = copy.deepcopy(document)
    changed["host_info"]["cpu_info"]["usage"] = float(draw(st.integers(0, 100)))
    for c in changed["docker_info"]["containers"]:
        if "stats" in c:
            c["stats"]["cpu_percent"] = float(draw(st.integers(0, 100)))
        c["state"] = draw(st.sampled_from([c["state"], c["state"], "running", "paused", "exited"]))
        c["status"] = draw(st.sampled_from(["", "", "Up 2 hours"]))
        if draw(st.booleans()):
            c.pop("stats", None)
    for p in changed["processes_info"]["processes"]:
        p["cpu_percent"] = float(draw(st.integers(0, 50)))
        p["status"] = draw(st.sampled_from([p["status"], p["status"], "running", "zombie"]))
        p["threads"] = draw(st.sampled_from([p["threads"], p["threads"], 7]))
    return changed


@st.composite
def sequences(draw: Any) -> list[tuple[dict[str, Any], bool, bool]]:
    """(report document, publish after it, signed) triples; timestamps increase.
    A report signed otherwise than its agent's last (a probe enrolled, or
    decommissioned) now and then."""
    latest: dict[str, dict[str, Any]] = {}
    steps = []
    for t in range(draw(st.integers(1, 14))):
        agent = draw(st.sampled_from(AGENTS))
        if agent in latest and draw(st.booleans()):
            document = draw(metrics_changed(latest[agent]))
        else:
            document = {**draw(documents()), "agent_id": agent}
        document["timestamp"] = _stamp(10 * t)
        latest[agent] = document
        steps.append((document, draw(st.booleans()), draw(st.sampled_from([False, False, True]))))
    return steps


def _holds_ports(container: dict[str, Any]) -> bool:
    """Whether a container of ``documents`` has published ports that are its own now."""
    return container["state"] in ("running", "paused") and any(p["host_port"] for p in container["ports"])


def _diff(diff: TopologyDiff | None) -> Any:
    if diff is None:
        return None
    return (diff.version, diff.previous_version,
            {k: v.as_dict() for k, v in diff.nodes_added.items()},
            {k: v.as_dict() for k, v in diff.nodes_updated.items()}, diff.nodes_removed,
            {k: v.as_dict() for k, v in diff.edges_added.items()},
            {k: v.as_dict() for k, v in diff.edges_updated.items()}, diff.edges_removed)


def _state(graph: TopologyGraph) -> Any:
    snapshot = graph.current
    return (snapshot.version,
            {n.id: n.as_dict() for view in View for n in snapshot.nodes(view)},
            {e.id: e.as_dict() for view in View for e in snapshot.edges(view)})


@settings(max_examples=300, deadline=None)
@given(sequences())
def test_reports_of_unchanged_structure_give_the_full_paths_graph_diffs_and_versions(
        steps: list[tuple[dict[str, Any], bool, bool]]) -> None:
    short, full = TopologyGraph(), FullPathGraph()
    for document, publish, enrolled in steps:
        report = decode_report(document)
        # The short path with the shape found beforehand, as the request that decoded the report finds it.
        assert short.apply(report, T0, shape=report_shape(report), enrolled=enrolled) == full.apply(
            report, T0, build_partition(report, T0, enrolled=enrolled))
        if publish:
            assert _diff(short.publish(T0)[1]) == _diff(full.publish(T0)[1])
            assert _state(short) == _state(full)
    assert _diff(short.publish(T0)[1]) == _diff(full.publish(T0)[1])
    assert _state(short) == _state(full)
    assert {n: short.details(n) for n in short.nodes} == {n: full.details(n) for n in full.nodes}


@settings(max_examples=300, deadline=None)
@given(documents().flatmap(lambda d: st.tuples(st.just(d), metrics_changed(d))), st.booleans())
def test_a_partition_refreshed_from_the_last_equals_one_built_from_scratch(
        pair: tuple[dict[str, Any], dict[str, Any]], enrolled: bool) -> None:
    first, second = pair
    first["timestamp"], second["timestamp"] = _stamp(0), _stamp(15)
    previous = build_partition(decode_report(first), T0, enrolled=enrolled)
    report = decode_report(second)
    refreshed = build_partition(report, T0 + 15, previous, enrolled=enrolled)
    scratch = build_partition(report, T0 + 15, enrolled=enrolled)
    # The short path was taken, unless a container's published ports were taken or given back.
    started_or_stopped = list(map(_holds_ports, first["docker_info"]["containers"])) != list(
        map(_holds_ports, second["docker_info"]["containers"]))
    assert (refreshed.reps is previous.reps) is not started_or_stopped
    assert list(refreshed.nodes.items()) == list(scratch.nodes.items())
    for part in ("reps", "listeners", "local_listeners", "addresses", "outgoing", "pods", "services", "shape", "kinds",
                 "report_time", "received_at", "enrolled"):
        assert getattr(refreshed, part) == getattr(scratch, part), part


def test_a_changed_connection_or_process_takes_the_full_path() -> None:
    document = {
        "agent_id": "a0", "hostname": "h0", "timestamp": _stamp(0),
        "host_info": {"ip_addresses": ["10.0.0.1"]},
        "processes_info": {"processes": [{"pid": 1, "name": "web"}]},
        "network_info": {"connections": [{"protocol": "tcp", "local_address": "10.0.0.1", "local_port": 40000,
                                          "remote_address": "10.0.0.2", "remote_port": 80,
                                          "state": "ESTABLISHED", "pid": 1}]},
    }
    previous = build_partition(decode_report(document), T0)
    for change in (lambda d: d["network_info"]["connections"][0].update(remote_port=5432),
                   lambda d: d["processes_info"]["processes"][0].update(name="db"),
                   lambda d: d["processes_info"]["processes"].append({"pid": 2}),
                   lambda d: d["host_info"].update(ip_addresses=["10.0.0.3"])):
        changed = copy.deepcopy(document)
        change(changed)
        assert build_partition(decode_report(changed), T0, previous).reps is not previous.reps


def test_a_partition_built_where_received_is_restamped_with_its_probes_clock_not_built_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A large report's partition is built off the event loop where it is
    received, with no clock offset known there; merged with another time
    (``seen``: its probe's clock off), it was built again on the topology's
    loop: its nodes are copied with that time instead, as a build would stamp them."""
    from trioscope.domain.topology import _graph

    report = decode_report(host_report(1, timestamp=T0 - 360, containers=3, processes=12, connections=8, peers=[2]))
    prebuilt = build_partition(report, T0)
    seen = T0 - 0.5
    builds: list[int] = []
    real_build = _graph.build_partition

    def counted(*args: Any, **kwargs: Any) -> Any:
        builds.append(1)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(_graph, "build_partition", counted)
    graph = TopologyGraph(now=T0)
    assert graph.apply(report, T0, prebuilt, seen=seen)
    assert builds == []
    merged = graph.partitions[report.agent_id]
    assert merged.report_time == seen
    assert merged.nodes == build_partition(report, T0, seen=seen).nodes
