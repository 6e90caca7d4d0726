"""Nodes and edges of the topology, and the views that select them."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
import orjson


class NodeKind(enum.Enum):
    HOST = "host"
    CONTAINER = "container"
    PROCESS = "process"
    POD = "pod"
    SERVICE = "service"


class View(enum.Enum):
    """What ``GET /api/v1/query/topology?view=`` shows: the nodes of one kind and
    the connections between them."""

    HOSTS = "hosts"
    CONTAINERS = "containers"
    PROCESSES = "processes"
    PODS = "pods"
    SERVICES = "services"

    @property
    def kind(self) -> NodeKind:
        return _VIEW_KIND[self]


_VIEW_KIND = {
    View.HOSTS: NodeKind.HOST,
    View.CONTAINERS: NodeKind.CONTAINER,
    View.PROCESSES: NodeKind.PROCESS,
    View.PODS: NodeKind.POD,
    View.SERVICES: NodeKind.SERVICE,
}


def host_id(hostname: str) -> str:
    return f"host:{hostname}"


def container_id(full_id: str) -> str:
    return f"container:{full_id}"


def process_id(hostname: str, pid: int) -> str:
    return f"process:{hostname}:{pid}"


def pod_id(namespace: str, name: str) -> str:
    return f"pod:{namespace}/{name}"


def service_id(namespace: str, name: str) -> str:
    return f"service:{namespace}/{name}"


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


VIEWS = tuple(View)
"""View order of ``Reps`` tuples."""

Reps = tuple[str | None, ...]
"""A node's representative in each view, in ``VIEWS`` order: itself in its own
kind's view, the node that contains it in coarser views (its container, host,
pod, service), None where it has none. Projecting a connection onto the views is
then a zip of two tuples."""


def reps(*, host: str, container: str | None = None, process: str | None = None,
         pod: str | None = None, service: str | None = None) -> Reps:
    return (host, container, process, pod, service)  # VIEWS order, checked below


assert VIEWS == (View.HOSTS, View.CONTAINERS, View.PROCESSES, View.PODS, View.SERVICES)


@attrs.frozen(kw_only=True, eq=True, cache_hash=False)
class Node:
    """One host, container, process, pod or service, as last reported.

    Immutable: a change is a new Node. Its JSON is encoded once, on first use,
    and reused by every snapshot and diff that contains it.
    """

    id: str
    kind: NodeKind
    label: str
    parent: str | None
    """The node that contains it (process -> container or host, container -> host,
    pod -> host); None for hosts and services."""
    host: str | None
    agent_id: str | None
    status: str
    last_seen: float
    """Report time (unix seconds) of the newest report that described it."""
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    metrics: Mapping[str, float] = attrs.field(factory=dict)
    _json: list[orjson.Fragment] = attrs.field(factory=list, eq=False, repr=False, alias="_json")

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.kind.value,
            "label": self.label,
            "parent": self.parent,
            "host": self.host,
            "agent_id": self.agent_id,
            "status": self.status,
            "last_seen": _rfc3339(self.last_seen),
            "metadata": self.metadata,
            "metrics": self.metrics,
        }

    def json(self) -> orjson.Fragment:
        """The node as a pre-encoded JSON fragment (cached)."""
        if not self._json:
            self._json.append(orjson.Fragment(orjson.dumps(self.as_dict())))
        return self._json[0]


@attrs.frozen(kw_only=True)
class Edge:
    """Connections between two nodes of the same kind, aggregated."""

    id: str
    source: str
    target: str
    connections: int
    """How many underlying connections (process to process) it stands for."""
    _json: list[orjson.Fragment] = attrs.field(factory=list, eq=False, repr=False, alias="_json")

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "target": self.target,
                "type": "connection", "connections": self.connections}

    def json(self) -> orjson.Fragment:
        if not self._json:
            self._json.append(orjson.Fragment(orjson.dumps(self.as_dict())))
        return self._json[0]


def edge_id(source: str, target: str) -> str:
    return f"{source}->{target}"
