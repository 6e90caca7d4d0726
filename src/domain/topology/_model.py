"""Nodes and edges of the topology, and the views that select them."""

from __future__ import annotations

import enum
import hashlib
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any

import msgspec
import orjson

from trioscope.wire import rfc3339_seconds


class NodeKind(enum.Enum):
    HOST = "host"
    CONTAINER = "container"
    PROCESS = "process"
    POD = "pod"
    SERVICE = "service"
    PROCESS_GROUP = "process_group"
    """The processes of one name on one host (``_process_groups``)."""

    # Members are singletons compared by identity: hashed by identity too, in
    # C, rather than by Enum's hash of the name in Python (a dict keyed by kind
    # is read several times per node of every merge).
    __hash__ = object.__hash__


class View(enum.Enum):
    """What ``GET /api/v1/query/topology?view=`` shows: the nodes of one kind and
    the connections between them."""

    HOSTS = "hosts"
    CONTAINERS = "containers"
    PROCESSES = "processes"
    PODS = "pods"
    SERVICES = "services"
    PROCESSES_BY_NAME = "processes-by-name"
    """Processes grouped by name per host, kernel threads left out (Weave
    Scope's "application processes by name"): ~13,000 groups where there are
    100,000 processes."""

    __hash__ = object.__hash__  # as NodeKind's

    @property
    def kind(self) -> NodeKind:
        return _VIEW_KIND[self]


_VIEW_KIND = {
    View.HOSTS: NodeKind.HOST,
    View.CONTAINERS: NodeKind.CONTAINER,
    View.PROCESSES: NodeKind.PROCESS,
    View.PODS: NodeKind.POD,
    View.SERVICES: NodeKind.SERVICE,
    View.PROCESSES_BY_NAME: NodeKind.PROCESS_GROUP,
}

WHOLE_KINDS = tuple(kind for kind in NodeKind if kind is not NodeKind.PROCESS_GROUP)
"""The kinds of the whole topology (``view=all``): process groups only stand
for processes, which it has already, and are shown in their own view."""
WHOLE_VIEWS = tuple(view for view in View if view.kind in WHOLE_KINDS)


SCOPE_CHARS = 12
"""Hex digits of a tenant's ``node_scope``."""


def node_scope(tenant: str) -> str:
    """What the node ids of a tenant's enrolled probes carry after ``@``
    (``host:web-1@3f2a...``): the first ``SCOPE_CHARS`` hex digits of the
    tenant's SHA-256, not its name, which the ids of a server whose reads are
    open would show to everyone. Nodes are named by what probes report (host
    names, pod names), which two tenants may share: scoped, each tenant's
    probes describe their own nodes, and neither tenant's reports nor an
    unsigned probe's (ids without a scope) can rename, re-state or add to
    another's, nor mix into its metric history."""
    return hashlib.sha256(tenant.encode()).hexdigest()[:SCOPE_CHARS]


def _escaped(text: str, also: str = "") -> str:
    """``text`` with ``%``, ``@`` (which starts a scope), ``>`` and the
    characters of ``also`` percent-encoded: nothing a probe reports can end in
    another tenant's scope, and no node id holds the ``->`` of an edge id
    (host ``a->b``'s edge to ``c`` was read back as host ``a``'s, and two
    edges of such names had one id)."""
    if "%" in text or "@" in text or ">" in text or (also and also in text):
        text = text.replace("%", "%25").replace("@", "%40").replace(">", "%3E")
        if also:
            text = text.replace(also, f"%{ord(also):02X}")
    return text


def _unescaped(text: str) -> str:
    return urllib.parse.unquote(text) if "%" in text else text


def _scoped(part: str, scope: str | None) -> str:
    return f"{part}@{scope}" if scope else part


def host_part(hostname: str, scope: str | None = None) -> str:
    """What names host ``hostname`` in the ids of its nodes (its own and its
    processes'): the name (``_escaped``), and ``@scope`` for an enrolled
    probe's (``node_scope``)."""
    return _scoped(_escaped(hostname), scope)


def host_id(hostname: str, scope: str | None = None) -> str:
    return f"host:{host_part(hostname, scope)}"


def container_id(full_id: str, scope: str | None = None) -> str:
    return f"container:{_scoped(_escaped(full_id), scope)}"


def id_scope(node_id: str) -> str | None:
    """The ``node_scope`` a node id carries (None: an unsigned report's node).
    A name's own ``@`` is escaped, so the first ``@`` of the part that names
    the node (a process's host part, a process group's host part) starts it."""
    if "@" not in node_id:
        return None
    kind, _, rest = node_id.partition(":")
    if kind == "process":
        rest = rest.rpartition(":")[0]
    elif kind == "process_group":
        rest = rest.partition(":")[0]  # its host part: the name after it may hold anything
    return rest.partition("@")[2] or None


def visible_to(scope: str, reporters: Callable[[str], bool]) -> Callable[[str, str | None], bool]:
    """Whether a reader whose tenant's ``node_scope`` is ``scope`` may see a
    node, by its id and agent: a scoped node by its tenant's readers alone,
    whoever reports under its agent id now (an agent id freed, or taken by
    another tenant's probe, gives nobody what the first one reported); an
    unscoped one by those who may see its reporter (``reporters``: a probe of
    no deployment, with ``auth.show_unassigned_agents``)."""
    def visible(node_id: str, agent_id: str | None) -> bool:
        found = id_scope(node_id)
        if found is not None:
            return found == scope
        return agent_id is not None and reporters(agent_id)

    return visible


def reported_container(node_id: str) -> str:
    """The container id a probe reported, of container node ``node_id``."""
    return _unescaped(node_id.removeprefix("container:").partition("@")[0])


def process_id(hostname: str, pid: int, scope: str | None = None) -> str:
    return f"process:{host_part(hostname, scope)}:{pid}"


def _group_part(namespace: str, name: str, scope: str | None) -> str:
    return _scoped(_escaped(namespace, "/") + "/" + _escaped(name), scope)


def pod_id(namespace: str, name: str, scope: str | None = None) -> str:
    return f"pod:{_group_part(namespace, name, scope)}"


def service_id(namespace: str, name: str, scope: str | None = None) -> str:
    return f"service:{_group_part(namespace, name, scope)}"


def group_names(group_id: str) -> tuple[str, str]:
    """The (namespace, name) of a pod or service node id."""
    rest = group_id.partition(":")[2].partition("@")[0]
    namespace, _, name = rest.partition("/")
    return _unescaped(namespace), _unescaped(name)


def process_group_id(hostname: str, name: str) -> str:
    """``process_group:<hostname>:<name>``, the host name with its ``%`` and
    ``:`` written ``%25`` and ``%3A``: both parts may hold colons, and host
    ``a:b``'s ``worker`` must not be host ``a``'s ``b:worker``. (A process id
    needs no such care: its pid, last, has none.) The name's ``%`` and ``>``
    are written ``%25`` and ``%3E``: no node id holds an edge id's ``->``."""
    if "%" in hostname or ":" in hostname:
        hostname = hostname.replace("%", "%25").replace(":", "%3A")
    if "%" in name or ">" in name:
        name = name.replace("%", "%25").replace(">", "%3E")
    return f"process_group:{hostname}:{name}"


VIEWS = tuple(View)
"""View order of ``Reps`` tuples."""

Reps = tuple[str | None, ...]
"""A node's representative in each view, in ``VIEWS`` order: itself in its own
kind's view, the node that contains it in coarser views (its container, host,
pod, service), None where it has none. Projecting a connection onto the views is
then a zip of two tuples."""


def reps(*, host: str, container: str | None = None, process: str | None = None,
         pod: str | None = None, service: str | None = None, process_group: str | None = None) -> Reps:
    return (host, container, process, pod, service, process_group)  # VIEWS order, checked below


assert VIEWS == (View.HOSTS, View.CONTAINERS, View.PROCESSES, View.PODS, View.SERVICES, View.PROCESSES_BY_NAME)


class Node(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One host, container, process, pod or service, as last reported.

    Immutable: a change is a new Node. Its JSON is encoded once, on first use,
    and reused by every snapshot and diff that contains it.

    A msgspec Struct left out of the cyclic garbage collector (``gc=False``):
    a node refers to strings, numbers and its metadata and metrics, never back
    to a node, so it can be in no cycle. The graph holds one node per process
    and replaces ~130 of them per report; as GC-tracked objects (an attrs
    class) each young collection walked every node replaced since the one
    before, the whole graph at 1,000 hosts: 80-150 ms with the event loop
    held, every few seconds (bench/RESULTS.md, session 37). A Struct is also
    made ~5x faster than a frozen attrs class (``seen``: 0.2 us, not 1.3) and
    is 24 bytes smaller.
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
    metadata: Mapping[str, Any] = msgspec.field(default_factory=dict)
    metrics: Mapping[str, float] = msgspec.field(default_factory=dict)
    _entry: bytes | None = None
    """The cached ``entry()`` (never passed: filled on first use); a slot
    rather than a one-item list, which cost 88 bytes more per node (2 MB per
    20,000 processes). Not part of a node's value: ``__eq__`` leaves it out."""

    def __eq__(self, other: object) -> bool:
        # Written out, not msgspec's: that compares every field, the cache too.
        return type(other) is Node and (
            self.id == other.id and self.kind is other.kind and self.label == other.label
            and self.parent == other.parent and self.host == other.host and self.agent_id == other.agent_id
            and self.status == other.status and self.last_seen == other.last_seen
            and self.metadata == other.metadata and self.metrics == other.metrics)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]  # its metadata and metrics are dicts: never a key

    def seen(self, last_seen: float, metrics: Mapping[str, float]) -> Node:
        """This node as reported again at ``last_seen`` with ``metrics``, the
        rest as it is (the metadata shared, not copied)."""
        return Node(id=self.id, kind=self.kind, label=self.label, parent=self.parent, host=self.host,
                    agent_id=self.agent_id, status=self.status, last_seen=last_seen, metadata=self.metadata,
                    metrics=metrics)

    def evolve(self, **changes: Any) -> Node:
        """This node with ``changes`` (field names as keywords), its encoding not carried over."""
        return msgspec.structs.replace(self, _entry=None, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The node as topology listings and diffs show it: identity, place,
        status, metrics and the metadata worth filtering on. The rest (command
        lines, environment, ports) is in ``details()``, so that a listing of
        100,000 processes stays a few tens of megabytes."""
        keys = _SUMMARY.get(self.kind, ())
        return {
            "id": self.id,
            "type": self.kind.value,
            "label": self.label,
            "parent": self.parent,
            "host": self.host,
            "agent_id": self.agent_id,
            "status": self.status,
            "last_seen": rfc3339_seconds(self.last_seen),
            "metadata": {k: self.metadata[k] for k in keys if k in self.metadata},
            "metrics": self.metrics,
        }

    def fields(self, names: Iterable[str]) -> dict[str, Any]:
        """Only the ``as_dict()`` keys ``names`` (from ``NODE_FIELDS``), in that
        order: what a listing with ``fields=`` or ``summary=true`` shows.
        Computes only what it shows (formatting ``last_seen`` is the costly part).

        Raises:
            KeyError: a name that is not in ``NODE_FIELDS``.
        """
        return {name: _FIELD_VALUES[name](self) for name in names}

    def details(self) -> dict[str, Any]:
        """Everything known about the node."""
        return {**self.as_dict(), "metadata": self.metadata}

    def entry(self) -> bytes:
        """``"<id>":<as_dict() as JSON>``, encoded once and cached: what a
        listing of nodes is assembled from."""
        entry = self._entry
        if entry is None:
            entry = _exact_entry(self.id, self.as_dict())
            # A cache filled on first use: the node's value does not change.
            _set_entry(self, entry)
        return entry

    def json(self) -> orjson.Fragment:
        """``as_dict()`` as a JSON fragment, from the cached entry."""
        return orjson.Fragment(self.entry()[_key_length(self.id):])


assert Node.__struct_fields__ == ("id", "kind", "label", "parent", "host", "agent_id", "status", "last_seen",
                                  "metadata", "metrics", "_entry"), "Node.__eq__ and Node.seen must name every field"
_set_entry = Node.__dict__["_entry"].__set__
"""Fills ``entry``'s cache on a frozen node (the slot's own setter)."""

_ENTRY = attrgetter("_entry")


def node_entries(nodes: Sequence[Node]) -> list[bytes]:
    """Each node's ``entry()``, read from the cached entries with no Python
    code run per node unless one is not encoded yet (a call per node was a
    third of the CPU of listing 100,000 processes)."""
    entries = list(map(_ENTRY, nodes))
    return entries if all(entries) else [node.entry() for node in nodes]


_SUMMARY: dict[NodeKind, tuple[str, ...]] = {
    # Why the engine does not answer beside that it does not (only then there):
    # a listing of hosts says what is wrong, not only where to look.
    NodeKind.HOST: ("hostname", "os", "ip_addresses", "cpu_cores", "memory_total_mb", "container_engine",
                    "container_engine_problem"),
    NodeKind.CONTAINER: ("name", "image", "state", "last_state", "labels", "pod", "service", "inferred"),
    NodeKind.PROCESS: ("pid", "name", "user", "container_name", "kernel_thread"),
    NodeKind.POD: ("namespace", "name", "uid", "hosts"),
    NodeKind.SERVICE: ("namespace", "name", "hosts"),
    NodeKind.PROCESS_GROUP: ("name", "pids", "statuses"),
}


_FIELD_VALUES: dict[str, Callable[[Node], Any]] = {
    "id": lambda node: node.id,
    "type": lambda node: node.kind.value,
    "label": lambda node: node.label,
    "parent": lambda node: node.parent,
    "host": lambda node: node.host,
    "agent_id": lambda node: node.agent_id,
    "status": lambda node: node.status,
    "last_seen": lambda node: rfc3339_seconds(node.last_seen),
    "metadata": lambda node: {k: node.metadata[k] for k in _SUMMARY.get(node.kind, ()) if k in node.metadata},
    "metrics": lambda node: node.metrics,
}

NODE_FIELDS = tuple(_FIELD_VALUES)
"""The keys of a node in listings (``Node.as_dict()``), in that order."""


def _key_length(node_or_edge_id: str) -> int:
    return len(orjson.dumps(node_or_edge_id)) + 1


def _exact_entry(key: str, value: Any) -> bytes:
    # Copied to an exact-size bytes object: orjson hands back a buffer of at
    # least 4 KiB whatever the length, which for a cache of 100,000 small
    # entries is ~400 MB of slack (measured: 4,097 bytes held for 31).
    return bytes(memoryview(orjson.dumps({key: value}))[1:-1])


class Edge(msgspec.Struct, frozen=True, gc=False):
    """Connections between two nodes of the same kind, aggregated.

    Three fields, encoded when read: a topology of 100,000 processes has
    ~200,000 of them, and an object with a cached id and encoding each cost
    ~90 MB (measured), more than the nodes' own caches. Left out of the
    cyclic garbage collector like ``Node`` (it refers to two strings and a
    number): as a named tuple each was walked by every full collection, and
    they were 40% of what a full collection walked at 1,000 hosts.
    """

    source: str
    target: str
    connections: int
    """How many underlying connections (process to process) it stands for."""

    @property
    def id(self) -> str:
        return edge_id(self.source, self.target)

    def as_dict(self) -> dict[str, Any]:
        return _edge_dict(self.id, self.source, self.target, self.connections)

    def json(self) -> orjson.Fragment:
        return orjson.Fragment(orjson.dumps(self.as_dict()))


def edge_id(source: str, target: str) -> str:
    """``<source>-><target>``: no node id holds ``>`` (``_escaped``), so the
    first ``->`` parts it again."""
    return f"{source}->{target}"


def edge_entries(edges: Iterable[Edge]) -> bytes:
    """``"<id>":<as_dict()>`` of each edge, comma-separated, encoded by one
    orjson call: half the time of one call per edge (a full listing has
    ~200,000 edges, encoded per request since they are not cached)."""
    document: dict[str, dict[str, Any]] = {}
    for each in edges:
        source, target = each.source, each.target
        edge = edge_id(source, target)
        document[edge] = _edge_dict(edge, source, target, each.connections)
    return orjson.dumps(document)[1:-1]


def _edge_dict(edge: str, source: str, target: str, connections: int) -> dict[str, Any]:
    return {"id": edge, "source": source, "target": target, "type": "connection", "connections": connections}
