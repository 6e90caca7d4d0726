"""Container controls in the topology: which agent's version of a container
wins a merge (an engine's over one inferred from cgroups), which controls an
enrolled agent's containers offer (its capabilities), and which parameters a
control takes."""

from __future__ import annotations

import itertools

import pytest

from tests.domain.test_topology import T0, published, report
from trioscope.domain.topology import (
    CONTROL_ACTIONS,
    TopologyGraph,
    allowed_actions,
    build_partition,
    container_id,
    control_parameter_problem,
    controls_for,
    merge_nodes,
)

CID = "4" * 64
ENGINE = [{"id": CID, "name": "/rev-web", "state": "paused", "image": "nginx"}]
CGROUP = [{"pid": 40, "name": "nginx", "cgroup": f"0::/system.slice/docker-{CID}.scope\n"}]


def _engine(t: float, enrolled: bool = False) -> tuple:
    return report("engine", "h", t, containers=ENGINE), t, enrolled


def _inferring(t: float) -> tuple:
    return report("local", "h", t, containers=[], processes=CGROUP), t, False


# ---- the engine's version of a container over one inferred --------------------------------

@pytest.mark.parametrize("order", ["engine first", "inferring first"])
def test_a_container_an_engine_lists_is_shown_as_listed_whichever_report_is_newer(order: str) -> None:
    """Two probes on one host, one without an engine (it infers containers from
    cgroups): polled every few seconds, the node kept the newest report's name
    (``rev-web`` or ``40ae8626260e``), state, agent and ``inferred`` in turn."""
    graph = TopologyGraph()
    node_id = container_id(CID)
    first, second = (_engine, _inferring) if order == "engine first" else (_inferring, _engine)
    for round_ in range(4):
        t = T0 + 15 * round_
        for made, at in ((first, t), (second, t + 5)):
            r, received, enrolled = made(at)
            graph.apply(r, received, enrolled=enrolled)
            node = published(graph, at).node(node_id)
            if round_ == 0 and made is first:
                continue  # the other has not reported yet
            assert (node.label, node.status, node.agent_id) == ("rev-web", "paused", "engine"), (round_, made)
            assert node.metadata["state"] == "paused" and "inferred" not in node.metadata
    assert set(graph.sources(node_id)) == {"engine", "local"}


def test_an_inferred_container_is_inferred_again_once_its_engine_stops_listing_it() -> None:
    graph = TopologyGraph()
    graph.apply(*_engine(T0)[:2])
    graph.apply(*_inferring(T0 + 5)[:2])
    graph.remove_agent("engine")
    node = published(graph).node(container_id(CID))
    assert node.metadata["inferred"] is True and node.label == CID[:12] and node.agent_id == "local"


def test_merge_nodes_ranks_listed_versions_above_inferred_ones_in_any_order() -> None:
    listed = build_partition(report("engine", "h", T0, containers=ENGINE), T0).nodes[container_id(CID)]
    inferred = build_partition(report("local", "h", T0 + 60, containers=[], processes=CGROUP),
                               T0 + 60).nodes[container_id(CID)]
    for versions in itertools.permutations([("engine", listed), ("local", inferred), ("z-local", inferred)]):
        merged, agent = merge_nodes(dict(versions))
        assert (merged, agent) == (listed, "engine")
    # Among inferred versions alone (or listed ones alone), the newest still wins.
    merged, agent = merge_nodes({"local": inferred, "other": inferred.seen(T0 + 90, {})})
    assert agent == "other" and merged.metadata["inferred"] is True


# ---- an enrolled agent's capabilities ------------------------------------------------------------

def test_allowed_actions_follow_the_probes_allow_list() -> None:
    assert allowed_actions(["docker.logs", "docker.inspect"], "trioscope-probe") == {"logs", "inspect"}
    assert allowed_actions([], "trioscope-probe") == frozenset()  # --allow "": nothing
    assert allowed_actions(["docker.logs"]) == {"logs"}  # in the probe's terms, whoever enrolled
    # Capabilities in other terms (the seed's agent) leave it to the agent: every control.
    assert allowed_actions(["docker", "restart"], "0.2.1") is None and allowed_actions([]) is None


def test_an_enrolled_agents_containers_offer_only_the_controls_it_allows() -> None:
    graph = TopologyGraph()
    allowed = allowed_actions(["docker.logs", "docker.inspect"], "trioscope-probe")
    running = [{"id": CID, "state": "running"}]
    graph.apply(report("a", "h", T0, containers=running), T0, enrolled=True, allowed=allowed)
    node = published(graph).node(container_id(CID))
    assert [c["id"] for c in node.metadata["controls"]] == ["logs", "inspect"]
    # Enrolled again allowing everything: from its next report (of the same shape) on.
    graph.apply(report("a", "h", T0 + 15, containers=running), T0 + 15, enrolled=True)
    assert published(graph).node(container_id(CID)).metadata["controls"] == controls_for("running")


def test_a_partition_built_before_its_agents_controls_were_known_is_restricted_when_merged() -> None:
    r = report("a", "h", T0, containers=[{"id": CID, "state": "running"}])
    graph = TopologyGraph()
    graph.apply(r, T0, build_partition(r, T0, enrolled=True), enrolled=True, allowed=frozenset({"stop"}))
    assert [c["id"] for c in published(graph).node(container_id(CID)).metadata["controls"]] == ["stop"]
    assert graph.controllers(container_id(CID)) == ("a",)


def test_a_merged_container_offers_what_an_agent_that_lists_it_runs() -> None:
    graph = TopologyGraph()
    running = [{"id": CID, "state": "running"}]
    graph.apply(report("logs-only", "h", T0, containers=running), T0, enrolled=True, allowed=frozenset({"logs"}))
    graph.apply(report("open", "h2", T0 + 5, containers=running), T0 + 5)  # unsigned: offers nothing
    graph.apply(report("local", "h", T0 + 9, containers=[], processes=CGROUP), T0 + 9)
    node_id = container_id(CID)
    assert [c["id"] for c in published(graph).node(node_id).metadata["controls"]] == ["logs"]
    assert graph.controllers(node_id) == ("logs-only",)  # never the unsigned one nor the inferring one
    graph.apply(report("stopper", "h3", T0 + 10, containers=running), T0 + 10, enrolled=True,
                allowed=frozenset({"stop"}))
    assert [c["id"] for c in published(graph).node(node_id).metadata["controls"]] == ["stop", "logs"]


# ---- parameters -------------------------------------------------------------------------------

@pytest.mark.parametrize(("action", "parameters", "problem"), [
    ("stop", {"timeout": "x"}, "timeout"),
    ("stop", {"timeout": 601}, "timeout"),
    ("restart", {"timeout": True}, "timeout"),
    ("remove", {"force": "yes"}, "force"),
    ("logs", {"tail": 0}, "tail"),
    ("logs", {"tail": 10_001, "follow": True}, "tail"),
    ("logs", {"follow": "yes"}, "follow"),
    ("exec", {}, "argv"),
    ("exec", {"argv": "ls -l"}, "argv"),
    ("exec", {"argv": []}, "argv"),
    ("exec", {"argv": ["ls", 1]}, "argv"),
])
def test_a_parameter_the_probe_would_refuse_is_named(action: str, parameters: dict, problem: str) -> None:
    found = control_parameter_problem(action, parameters)
    assert found is not None and found[0] == problem


@pytest.mark.parametrize(("action", "parameters"), [
    ("stop", {}), ("stop", {"timeout": 0}), ("restart", {"timeout": 600}), ("remove", {"force": True}),
    ("logs", {"tail": 1}), ("logs", {"tail": 0, "follow": True}), ("exec", {"argv": ["ls", "-l"]}),
    ("pause", {"timeout": "ignored: pause takes none"}), ("inspect", {"anything": [1]}),
])
def test_parameters_the_probe_takes_pass(action: str, parameters: dict) -> None:
    assert control_parameter_problem(action, parameters) is None


def test_the_controls_are_the_probes_command_types() -> None:
    assert CONTROL_ACTIONS == ("exec", "inspect", "logs", "pause", "remove", "restart", "start", "stop", "unpause")
