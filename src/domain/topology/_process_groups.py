"""Processes of one name on one host as one node: the ``processes-by-name``
view, as Weave Scope's "application processes by name" showed them.

At 1,000 hosts of 100 processes the processes view is 100,000 nodes and
~200,000 edges (80 MB of JSON); grouped, ~13,000 nodes and the edges between
groups, each the sum of the connections between their processes. Kernel
threads are in no group: they are noise in a map of applications (and the
processes view still has them).

The graph keeps each group's members (from the processes' representatives,
``Reps``), rebuilds a group's node from its members when one of them changes,
and projects connections onto groups like onto any other view.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter
from typing import Any

from ._model import Node, NodeKind, process_group_id


def group_of(process: Node) -> str | None:
    """The id of the group ``process`` is shown in (its host's processes of
    its name), or None: a kernel thread, or a node that is no process."""
    if process.kind is not NodeKind.PROCESS or process.host is None or process.metadata.get("kernel_thread"):
        return None
    return process_group_id(process.host.partition(":")[2], name_of(process))


def name_of(process: Node) -> str:
    """What a process is grouped by: its name (its pid for a nameless one)."""
    return process.metadata.get("name") or process.label


_BY_ID = attrgetter("id")
_RECENCY = attrgetter("last_seen", "id")


def group_node(group_id: str, members: Iterable[Node]) -> Node | None:
    """The node of group ``group_id`` from its member processes (None for
    none): their CPU and memory summed, how many there are, their pids, how
    many are in each status, and the status most of them are in.

    The same whatever order ``members`` come in (sums are taken in id order)."""
    return group_node_ordered(group_id, sorted(members, key=_BY_ID))


def group_node_ordered(group_id: str, ordered: list[Node]) -> Node | None:
    """``group_node`` of members already in id order."""
    if not ordered:
        return None
    first = ordered[0]
    newest = max(ordered, key=_RECENCY)
    statuses: dict[str, int] = {}
    for node in ordered:
        statuses[node.status] = statuses.get(node.status, 0) + 1
    metadata: dict[str, Any] = {
        "name": name_of(first),
        "pids": sorted([node.metadata.get("pid", 0) for node in ordered]),
        "statuses": dict(sorted(statuses.items())),
    }
    return Node(
        id=group_id, kind=NodeKind.PROCESS_GROUP, label=name_of(first), parent=first.host, host=first.host,
        agent_id=newest.agent_id,
        # The most common status (ties: the first by name); "statuses" has them all.
        status=min(statuses, key=lambda status: (-statuses[status], status)),
        last_seen=newest.last_seen,
        metadata=metadata,
        metrics=_group_metrics(ordered),
    )


def regrouped(previous: Node, ordered: list[Node]) -> Node:
    """The node ``group_node_ordered`` builds for ``ordered``, given ``previous``,
    its node for members that differ from these only in metrics and time:
    each has the very metadata object (``Node.seen`` shares it) of the member
    in its place when ``previous`` was built, hence its id, name, pid, status
    and host. The metadata, status and place are ``previous``'s; only the
    sums and the newest member are found again (a host's metrics-only
    report rebuilds its dozen groups)."""
    newest = max(ordered, key=_RECENCY)
    node = previous.seen(newest.last_seen, _group_metrics(ordered))
    return node if newest.agent_id == previous.agent_id else node.evolve(agent_id=newest.agent_id)


def _group_metrics(ordered: list[Node]) -> dict[str, float]:
    """Sums in id order (a float sum depends on its order, and the diff must not
    change when nothing did); each figure by one comprehension, rather than a
    Counter and generators."""
    metrics = [node.metrics for node in ordered]
    cpu = [m.get("cpu_percent", 0.0) for m in metrics]
    return {
        "cpu_percent": sum(cpu),
        "cpu_percent_max": max(cpu),
        "memory_mb": sum([m.get("memory_mb", 0.0) for m in metrics]),
        "processes": float(len(ordered)),
    }
