"""An unsigned (anonymous) report never overwrites an enrolled agent's node:
where a signed report describes a node, the unsigned versions of it are left
out of the merge (its name, state, parent, agent and metadata stay the
signed agents'); unsigned versions alone merge as before."""

from __future__ import annotations

import itertools
from typing import Any

from tests.domain.test_topology import T0, published, report
from trioscope.domain.topology import TopologyGraph, build_partition, container_id, controls_for, host_id, merge_nodes

CID = "5" * 64
OWN = [{"id": CID, "name": "/web", "state": "running", "image": "nginx"}]
FORGED = [{"id": CID, "name": "/renamed", "state": "exited", "image": "evil"}]


def details(graph: TopologyGraph, node_id: str) -> dict[str, Any]:
    found = graph.details(node_id)
    assert found is not None
    return found


def test_an_unsigned_report_of_an_enrolled_agents_container_changes_nothing_of_it() -> None:
    """The anonymous report (exited, another name, another host) took the
    container over: A's stop was refused (409 control_not_available)."""
    graph = TopologyGraph()
    node_id = container_id(CID)
    for round_ in range(3):  # newer each time; the same shape from the second round on (refreshed)
        t = T0 + 15 * round_
        graph.apply(report("a", "ha", t, containers=OWN), t, enrolled=True)
        graph.apply(report("anon", "hx", t + 5, containers=FORGED), t + 5)
        node = published(graph, t + 5).node(node_id)
        assert node is not None
        assert (node.label, node.status, node.parent, node.agent_id) == ("web", "running", host_id("ha"), "a")
        assert node.metadata["state"] == "running" and node.metadata["image"] == "nginx"
        assert node.metadata["controls"] == controls_for("running")
        assert graph.controllers(node_id) == ("a",)
        assert [p["id"] for p in details(graph, node_id)["parents"]] == [host_id("ha")]
        assert [c["id"] for c in details(graph, host_id("ha"))["children"]] == [node_id]
        assert details(graph, host_id("hx"))["children"] == []
    assert set(graph.sources(node_id)) == {"a", "anon"}
    graph.remove_agent("a")  # the unsigned version alone: as it reports it
    node = published(graph, T0 + 60).node(node_id)
    assert node is not None and (node.label, node.parent, node.agent_id) == ("renamed", host_id("hx"), "anon")
    assert "controls" not in node.metadata
    assert details(graph, host_id("hx"))["children"] == [
        {"id": node_id, "type": "container", "label": "renamed", "agent_id": "anon"}]


def test_an_unsigned_report_of_an_enrolled_agents_host_name_does_not_take_the_host_over() -> None:
    graph = TopologyGraph()
    graph.apply(report("a", "h", T0, host_info={"hostname": "h", "kernel_version": "6.1"}), T0, enrolled=True)
    graph.apply(report("anon", "h", T0 + 5, host_info={"hostname": "h", "kernel_version": "0.0-evil"}), T0 + 5)
    host = published(graph, T0 + 5).node(host_id("h"))
    assert host is not None and host.agent_id == "a"
    assert host.metadata["agent_id"] == "a" and host.metadata["kernel_version"] == "6.1"


def test_merge_nodes_leaves_unsigned_versions_out_where_a_signed_one_is_in_any_order() -> None:
    own = build_partition(report("a", "ha", T0, containers=OWN), T0, enrolled=True).nodes[container_id(CID)]
    forged = build_partition(report("anon", "hx", T0 + 60, containers=FORGED), T0 + 60).nodes[container_id(CID)]
    for versions in itertools.permutations([("a", own), ("anon", forged), ("0-anon", forged)]):
        assert merge_nodes(dict(versions), signed={"a"}) == (own, "a")
    # Two signed: the newest of them; unsigned alone (or no one signed): the newest, as before.
    newer = own.seen(T0 + 30, {})
    assert merge_nodes({"a": own, "b": newer, "anon": forged}, signed={"a", "b"}) == (newer, "b")
    assert merge_nodes({"a": own, "anon": forged}, signed=set())[1] == "anon"
    assert merge_nodes({"a": own, "anon": forged})[1] == "anon"
    # A signed agent's inferred container is not an unsigned report's to name.
    inferred = build_partition(report("a", "ha", T0, containers=[], processes=[
        {"pid": 40, "name": "nginx", "cgroup": f"0::/system.slice/docker-{CID}.scope\n"}]), T0,
        enrolled=True).nodes[container_id(CID)]
    assert merge_nodes({"a": inferred, "anon": forged}, signed={"a"}) == (inferred, "a")
