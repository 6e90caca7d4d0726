"""A host whose container engine does not answer its probe (the report's
``docker_info.reachable`` false): its host node says so, and its containers
are kept, stale, rather than dropped as if removed.

The engine's outage says nothing of the containers: a stopped Docker daemon
with live-restore, or Podman's API service, leaves them running. Before, the
report listed none of them: they vanished from the topology, and those whose
processes the probe still saw came back as inferred containers, "running"
(a paused one too). Now every container the engine last listed stays as it
was last known, in state ``unknown`` (its last state in ``last_state``, its
``last_seen`` when it was listed), without metrics and without controls (no
control could reach it), until the engine answers and lists them again, for
at most ``KEEP_LISTED_SECONDS`` after it was listed.

Who keeps them: the probe, which repeats its engine's last listing in its
reports (``DockerInfo.listed_at`` says when it was). Such a report is the
whole of its host, as any other: its kept containers' addresses and published
ports are resolved from it, and a server restarted meanwhile, or a replica
rebuilding from the bus's newest reports, shows them too. A report without
``listed_at`` (a probe from before it, or one restarted during the outage)
lists none, or once: the server then keeps those of the agent's earlier
partition itself (``kept_by_server``), their nodes only (no endpoints: the
partition keeps no container's listing), as long as it has that partition."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from trioscope.wire import KEEP_LISTED_SECONDS, Report

from ._controls import controls_for
from ._model import Node, NodeKind, Reps

if TYPE_CHECKING:
    from ._partition import Partition  # which imports this module (``engine_metadata``)

UNKNOWN = "unknown"
"""A container's state while its host's engine does not answer."""


def engine_metadata(report: Report) -> dict[str, Any]:
    """The host node's metadata of its container engine: ``container_engine``
    "reachable" or "unreachable" (and then ``container_engine_problem``);
    none for a report without ``docker_info`` (no engine configured)."""
    engine = report.docker_info
    if engine is None:
        return {}
    if engine.reachable:
        return {"container_engine": "reachable"}
    return {"container_engine": "unreachable", "container_engine_problem": engine.problem}


def engine_unreachable(report: Report) -> bool:
    """Whether ``report`` says its host's container engine does not answer."""
    return report.docker_info is not None and not report.docker_info.reachable


def listed_when(report: Report, when: float) -> float:
    """When the containers of ``report`` were listed (its ``last_seen``):
    ``listed_at`` for an outage's repeated listing (no later than ``when``,
    the report's time on the server's clock, nor ``KEEP_LISTED_SECONDS``
    before it: the probe keeps them no longer, and a clock set right since
    the listing shows no years-old time), else ``when``. ``listed_at`` is on
    the probe's clock, as the report's own time: it stands as long before
    ``when`` as it was before that (a clock behind or ahead is shifted alike)."""
    listed_at = report.docker_info.listed_at if report.docker_info is not None else None
    if listed_at is None:
        return when
    listed = when - (report.timestamp.timestamp() - listed_at.timestamp())
    return min(max(listed, when - KEEP_LISTED_SECONDS), when)


def server_keeps(report: Report) -> bool:
    """Whether the server keeps the containers of its host's earlier
    reports for ``report``: its engine does not answer, and it does not say
    its last listing (``listed_at``: a probe that says it repeats that)."""
    return report.docker_info is not None and not report.docker_info.reachable \
        and report.docker_info.listed_at is None


def kept_by_server(previous: Partition | None, when: float) -> list[Node]:
    """The containers of ``previous`` (the agent's partition before a report
    of time ``when`` for which the server keeps them: ``server_keeps``) that
    the engine listed, up to ``KEEP_LISTED_SECONDS`` after it did."""
    if previous is None:
        return []
    horizon = when - KEEP_LISTED_SECONDS
    return [n for n in previous.nodes.values()
            if n.kind is NodeKind.CONTAINER and not n.metadata.get("inferred") and n.last_seen >= horizon]


def listed_state(node: Node) -> str:
    """The state a container node was last listed in: its ``last_state``
    when it is kept as last known (``is_stale``), else its state."""
    return str(node.metadata["last_state"]) if is_stale(node) else node.status


def is_stale(node: Node) -> bool:
    """Whether ``node`` is a container kept as last known (``stale``)."""
    return node.status == UNKNOWN and "last_state" in node.metadata


def expired(previous: Partition, when: float) -> bool:
    """Whether a container ``previous`` keeps as last known was listed more
    than ``KEEP_LISTED_SECONDS`` before ``when``."""
    horizon = when - KEEP_LISTED_SECONDS
    return any(n.kind is NodeKind.CONTAINER and n.last_seen < horizon and is_stale(n)
               for n in previous.nodes.values())


def stale(node: Node) -> Node:
    """A container node as last known, its engine not answering (the same
    node if it is so already)."""
    if is_stale(node):
        return node
    metadata = {**node.metadata, "state": UNKNOWN, "last_state": node.metadata.get("state", node.status)}
    if "controls" in metadata:  # kept, so that the signed report's version still wins a merge: none offered
        metadata["controls"] = controls_for(UNKNOWN)
    return node.evolve(status=UNKNOWN, metadata=metadata, metrics={})


def kept_containers(partition: Partition, previous: Partition | None, kept: list[Node]) -> Partition:
    """``partition``, of a report whose engine does not answer, with every
    container the engine listed ``stale``: those of the report (what its probe
    last listed, if any) and ``kept`` (``kept_by_server``: of ``previous``,
    the agent's partition before it) where the report lacks them or only
    inferred them from its processes' cgroups, each with its place in the
    views and its pod and service (when ``previous`` is of the same host).
    Containers inferred and never listed stay as they are.

    The same objects where nothing changes (an outage's later reports, whose
    partition ``refreshed`` built from one that went through here): the
    merge's fast path (``Partition.same_structure``) holds during an outage.
    Endpoints (a container's addresses, published ports) are the report's:
    those of the report's containers, not of ``kept``."""
    container = NodeKind.CONTAINER
    nodes = dict(partition.nodes)
    for node in partition.nodes.values():
        if node.kind is container and not node.metadata.get("inferred"):
            nodes[node.id] = stale(node)
    reps: dict[str, Reps] = {}
    pods: dict[str, tuple[str, ...]] = {}
    services: dict[str, tuple[str, ...]] = {}
    if previous is not None and previous.host == partition.host and previous.scope == partition.scope:
        for node in kept:
            now = nodes.get(node.id)
            if now is not None and not now.metadata.get("inferred"):
                continue
            nodes[node.id] = stale(node)
            if partition.reps.get(node.id) != previous.reps[node.id]:
                reps[node.id] = previous.reps[node.id]
            _join(pods, partition.pods, node.metadata.get("pod"), node.id)
            _join(services, partition.services, node.metadata.get("service"), node.id)
    if len(nodes) == len(partition.nodes) and all(nodes[k] is v for k, v in partition.nodes.items()):
        return partition  # (reps, pods and services change only with a node added)
    return attrs.evolve(partition, nodes=nodes, reps={**partition.reps, **reps} if reps else partition.reps,
                        pods={**partition.pods, **pods} if pods else partition.pods,
                        services={**partition.services, **services} if services else partition.services,
                        kinds=partition.kinds | {container})


def _join(added: dict[str, tuple[str, ...]], groups: Mapping[str, tuple[str, ...]], group: str | None,
          member: str) -> None:
    """Add ``member`` to ``group`` in ``added`` (the groups changed, each
    whole), unless ``groups`` (the partition's) has it there already."""
    if group is None:
        return
    members = added.get(group, groups.get(group, ()))
    if member not in members:
        added[group] = (*members, member)
