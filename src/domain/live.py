"""Live updates over WebSocket, the pure part: what clients may ask, what they are
sent, and which nodes their filters let through. No I/O; the hub and client
actors use it.

Server messages are ``{"type", "payload"}`` (the seed's shape): ``topology_update``
(a reset with the whole view, or a diff from ``previous_version`` to ``version``),
``report_update``, ``ping``/``pong`` and ``error``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from itertools import islice
from typing import Any

import attrs
import orjson

from trioscope.domain.topology import (
    WHOLE_KINDS,
    Edge,
    Node,
    NodeKind,
    TopologyDiff,
    TopologySnapshot,
    View,
    edge_kind,
    kind_of,
    visible_to,
)

MAX_TOPICS = 64
"""Topics in one subscribe or unsubscribe message."""
MAX_SUBSCRIBED = 1024
"""Agent and node topics one client holds at once (they add up over messages)."""
MAX_SEARCH = 200
MAX_LABELS = 16


class BadClientMessage(ValueError):
    """A client message we cannot act on; answered with an ``error`` message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attrs.frozen
class Filter:
    """Which nodes (and so edges) a client wants; an empty filter passes all."""

    search: str = ""
    """Case-insensitive substring of the label, id or a metadata value."""
    labels: Mapping[str, str] = attrs.field(factory=dict)
    """Container labels that must match exactly."""
    min_metrics: Mapping[str, float] = attrs.field(factory=dict)
    """Metrics that must be at least this value."""
    ids: frozenset[str] = frozenset()
    """Only these nodes (from ``node:<id>`` topics); empty for all."""

    @property
    def empty(self) -> bool:
        return not (self.search or self.labels or self.min_metrics or self.ids)

    def matches(self, node: Node, texts: SearchTexts | None = None) -> bool:
        """Whether ``node`` passes; ``texts``: where the searched text of the
        nodes of its version is kept, made once for every client of it."""
        if self.ids and node.id not in self.ids:
            return False
        if self.search:
            needle = self.search.lower()
            if texts is not None and _SEPARATOR not in needle:
                if needle not in texts.of(node):
                    return False
            elif not any(needle in text.lower() for text in _haystack(node)):
                return False
        if self.labels:
            labels = node.metadata.get("labels", {})
            if any(labels.get(k) != v for k, v in self.labels.items()):
                return False
        for name, minimum in self.min_metrics.items():
            if node.metrics.get(name, float("-inf")) < minimum:
                return False
        return True


_SEPARATOR = "\x00"
"""Between the texts of one node in its ``SearchTexts`` entry: a search with
it is looked for text by text instead."""


def _haystack(node: Node) -> list[str]:
    """The texts a filter's ``search`` looks in."""
    return [node.label, node.id, *(str(v) for v in node.metadata.values())]


class SearchTexts:
    """The lower-cased searched text of the nodes of one version, each made
    once for every client that filters them (``Filter.matches``): a hundred
    clients with a search each lower-cased every changed node's metadata a
    hundred times a version. Kept with the version (``of_version``), and
    holding only the nodes looked at: those of the diffs."""

    __slots__ = ("_texts",)

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}

    @staticmethod
    def of_version(snapshot: TopologySnapshot) -> SearchTexts:
        """The one of ``snapshot``'s version (its nodes are the ones looked up)."""
        return snapshot.derived(("live search texts",), SearchTexts)

    def of(self, node: Node) -> str:
        """``node``'s texts, lower-cased, joined by ``_SEPARATOR``."""
        text = self._texts.get(node.id)
        if text is None:
            text = self._texts[node.id] = _SEPARATOR.join(t.lower() for t in _haystack(node))
        return text


@attrs.frozen
class Subscription:
    """What one client follows."""

    topology: bool = True
    reports: bool = False
    agents: frozenset[str] = frozenset()
    view: View | None = None
    filter: Filter = Filter()

    def wants_report(self, agent_id: str) -> bool:
        return self.reports or agent_id in self.agents

    @property
    def wants_any_report(self) -> bool:
        """True when some agent's report updates are for it."""
        return self.reports or bool(self.agents)

    @property
    def shared(self) -> bool:
        """True when it can take the frames every client of its view shares."""
        return self.filter.empty


class Visibility:
    """Which nodes one client may see at all (with ``auth.protect_reads``: those
    its tenant's probes reported), and which of them it holds: removals and
    edges name node ids, so only those of nodes it was shown are sent.

    ``may_see`` answers for a probe agent id and may change its answers (a
    probe enrolling); a node that stops being visible leaves the client's view.
    ``scope``: the ``node_scope`` of the reader's tenant, whose scoped nodes
    alone it sees (``visible_to``).
    Without ``may_see`` every node may be seen and it only keeps track of what
    the client holds, which a client with a filter needs as much: a node that
    starts matching is new to it (``add``, with its edges to the nodes it
    holds), and an edge is its only if it holds both ends.
    """

    def __init__(self, may_see: Callable[[str], bool] | None = None, scope: str = "") -> None:
        self.may_see = may_see if may_see is not None else _anyone
        self._everyone = may_see is None
        self._visible = visible_to(scope, self.may_see)
        self.shown: set[str] = set()

    def node(self, node: Node) -> bool:
        return self._everyone or self._visible(node.id, node.agent_id)


def _anyone(agent_id: str) -> bool:
    return True


@attrs.define
class ResetThrottle:
    """When one client may be sent its next reset.

    A reset (the whole view, through the client's filter) is the costliest frame
    there is, and a client asks for one with a few bytes: ``resync``, or a new
    view or filter. However often it asks, it is owed at most one. Its owner
    builds it only once the client has room for it, and, after the reset the
    client connected with, at most once per ``interval`` (or per the time the
    previous one took to build, if longer): requests in between coalesce into
    the one reset sent when the interval ends. None is ever dropped.
    """

    interval: float
    """Least seconds between two resets after the first."""
    owed: bool = False
    """The client is due a reset (it asked, missed an update, or lagged)."""
    not_before: float = float("-inf")
    """When the next reset may be built at the earliest."""

    def owe(self) -> None:
        self.owed = True

    def forget(self) -> None:
        """Nothing to reset any more (the client left the topology topic)."""
        self.owed = False

    def due(self, now: float) -> bool:
        """Whether the owed reset may be built at ``now`` (room permitting)."""
        return self.owed and now >= self.not_before

    def sent(self, now: float, *, took: float = 0.0, first: bool = False) -> None:
        """A reset went out at ``now`` after ``took`` seconds of building; the
        ``first`` one (on connecting) does not start an interval, so that the
        subscribe a browser sends right after connecting is answered at once."""
        self.owed = False
        if not first:
            self.not_before = now + max(self.interval, took)


class ViewAdmission:
    """Clients waiting for their first view (the whole view they connect with):
    at most ``max_waiting`` at once, and their views started at most ``rate``
    per second after a burst of ``burst``, in the order they came.

    A burst of connections (every browser reconnecting after a restart) then
    costs the server a bounded share of its time, and each waiting client is
    counted: one more is refused (503) rather than queued without bound. A
    client stops waiting once its first view has been written to it, or when
    it leaves. At most ``max_per_address`` of them wait from one client
    address: clients that never read their first view (each held until the
    server's write timeout) from a few addresses would otherwise fill the
    whole room, and every other live view would be refused meanwhile.
    """

    def __init__(self, rate: float, max_waiting: int, burst: int = 1, max_per_address: int | None = None) -> None:
        if rate <= 0 or max_waiting < 1 or burst < 1 or (max_per_address is not None and max_per_address < 1):
            raise ValueError(f"invalid admission: rate {rate}, max_waiting {max_waiting}, burst {burst}, "
                             f"max_per_address {max_per_address}")
        self.rate = rate
        self.max_waiting = max_waiting
        self.burst = burst
        self.max_per_address = max_per_address if max_per_address is not None else max_waiting
        self.waiting = 0
        """Clients admitted whose first view has not been written yet."""
        self._by_address: dict[str, int] = {}
        """Of them, how many from each address (none: absent)."""
        self._next = float("-inf")
        """When the next view would start at the steady rate (the bucket's
        "theoretical arrival time"); up to ``burst - 1`` may start before."""

    def enter(self, now: float, address: str = "") -> float | None:
        """Admit one client from ``address`` at ``now``: the time its first view
        may start (``now`` or later), or None when ``max_waiting`` clients are
        waiting already, or ``max_per_address`` from ``address`` (nothing is
        counted then; ``full_for`` says which)."""
        if self.full_for(address):
            return None
        self.waiting += 1
        self._by_address[address] = self._by_address.get(address, 0) + 1
        interval = 1.0 / self.rate
        start = max(now, self._next - (self.burst - 1) * interval)
        self._next = max(self._next, now) + interval
        return start

    def full_for(self, address: str) -> str | None:
        """Why a client from ``address`` would not be admitted now ("server" or "address"), or None."""
        if self.waiting >= self.max_waiting:
            return "server"
        if self._by_address.get(address, 0) >= self.max_per_address:
            return "address"
        return None

    def leave(self, address: str = "") -> None:
        """One admitted client from ``address`` has its first view, or left without it."""
        self.waiting = max(0, self.waiting - 1)
        left = self._by_address.get(address, 0) - 1
        if left > 0:
            self._by_address[address] = left
        else:
            self._by_address.pop(address, None)


@attrs.frozen
class Subscribe:
    topics: tuple[str, ...]
    view: View | None
    view_given: bool
    """False when the message named no view (the current one is kept)."""
    filter: Filter | None


@attrs.frozen
class Unsubscribe:
    topics: tuple[str, ...]


@attrs.frozen
class Resync:
    pass


@attrs.frozen
class Ping:
    pass


@attrs.frozen
class Pong:
    pass


ClientMessage = Subscribe | Unsubscribe | Resync | Ping | Pong
_VIEWS = {v.value: v for v in View}


def parse_view(name: object) -> View | None:
    """``hosts|containers|processes|pods|services|processes-by-name``, or None (the whole topology) for
    ``None``/``"all"``."""
    if name is None or name == "all":
        return None
    if isinstance(name, str) and name in _VIEWS:
        return _VIEWS[name]
    raise BadClientMessage("invalid_view", f"view: unknown view {str(name)[:80]!r}; use one of all, {', '.join(_VIEWS)}")


def _topics(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise BadClientMessage("invalid_topics", "topics: must be a list of strings")
    if len(value) > MAX_TOPICS:
        raise BadClientMessage("invalid_topics", f"topics: at most {MAX_TOPICS} topics")
    for topic in value:
        if topic not in ("topology", "reports") and not topic.startswith(("agent:", "node:")):
            raise BadClientMessage("invalid_topics", f"topics: unknown topic {topic[:80]!r}; use topology, "
                                   "reports, agent:<agent id> or node:<node id>")
        if len(topic) > 300:
            raise BadClientMessage("invalid_topics", "topics: a topic is at most 300 characters")
    return tuple(value)


def _filter(value: object) -> Filter | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadClientMessage("invalid_filter", "filter: must be an object")
    search = value.get("search", "")
    if not isinstance(search, str) or len(search) > MAX_SEARCH:
        raise BadClientMessage("invalid_filter", f"filter.search: must be a string of at most {MAX_SEARCH} characters")
    labels = value.get("labels", {})
    if (not isinstance(labels, dict) or len(labels) > MAX_LABELS
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
        raise BadClientMessage("invalid_filter", f"filter.labels: must map at most {MAX_LABELS} label names to strings")
    metrics = value.get("min_metrics", {})
    if (not isinstance(metrics, dict) or len(metrics) > MAX_LABELS
            or not all(isinstance(k, str) and type(v) in (int, float) for k, v in metrics.items())):
        raise BadClientMessage("invalid_filter", "filter.min_metrics: must map metric names to numbers")
    unknown = set(value) - {"search", "labels", "min_metrics"}
    if unknown:
        raise BadClientMessage("invalid_filter", f"filter: unknown keys {sorted(unknown)}; "
                               "use search, labels, min_metrics")
    return Filter(search=search, labels=dict(labels), min_metrics={k: float(v) for k, v in metrics.items()})


def parse_client_message(data: str | bytes) -> ClientMessage:
    """Decode one client frame.

    Raises:
        BadClientMessage: with a code (``invalid_json``, ``unknown_type``, ...)
            and a message naming the problem.
    """
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadClientMessage("invalid_json", f"message is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise BadClientMessage("invalid_message", "message must be a JSON object with a type")
    kind = message.get("type")
    if kind == "ping":
        return Ping()
    if kind == "pong":
        return Pong()
    if kind == "resync":
        return Resync()
    if kind == "subscribe":
        topics = _topics(message.get("topics", ["topology"]))
        return Subscribe(topics=topics, view=parse_view(message.get("view")), view_given="view" in message,
                         filter=_filter(message.get("filter")))
    if kind == "unsubscribe":
        return Unsubscribe(topics=_topics(message.get("topics", [])))
    raise BadClientMessage("unknown_type", f"type: unknown message type {kind!r}; use subscribe, "
                           "unsubscribe, resync, ping or pong")


def subscribe(current: Subscription, request: Subscribe) -> Subscription:
    """The subscription after ``request`` (topics are added; view and filter, when
    given, replace the current ones).

    Raises:
        BadClientMessage: the client would hold more than ``MAX_SUBSCRIBED``
            agent or node topics (it keeps those it has).
    """
    topics = set(request.topics)
    nodes = frozenset(t[5:] for t in topics if t.startswith("node:"))
    base = request.filter if request.filter is not None else current.filter
    agents = {t[6:] for t in topics if t.startswith("agent:")}
    if len(current.agents | agents) > MAX_SUBSCRIBED or len(base.ids | nodes) > MAX_SUBSCRIBED:
        raise BadClientMessage("too_many_topics", f"topics: at most {MAX_SUBSCRIBED} agent and "
                               f"{MAX_SUBSCRIBED} node topics at once; unsubscribe from some first")
    return attrs.evolve(
        current,
        topology=current.topology or "topology" in topics or bool(nodes),
        reports=current.reports or "reports" in topics,
        agents=current.agents | agents,
        view=request.view if request.view_given else current.view,
        filter=attrs.evolve(base, ids=base.ids | nodes) if nodes or request.filter is not None else current.filter,
    )


def unsubscribe(current: Subscription, request: Unsubscribe) -> Subscription:
    topics = set(request.topics)
    nodes = frozenset(t[5:] for t in topics if t.startswith("node:"))
    return attrs.evolve(
        current,
        topology=current.topology and "topology" not in topics,
        reports=current.reports and "reports" not in topics,
        agents=current.agents - {t[6:] for t in topics if t.startswith("agent:")},
        filter=attrs.evolve(current.filter, ids=current.filter.ids - nodes),
    )


# ---- frames -------------------------------------------------------------------------------

class PreFramed:
    """A large text frame (a big view's first view: the processes of 2,000
    hosts are 159 MB) made from its pieces straight into the WebSocket frame
    the transport sends (``wire``), never a ``str``: joining the pieces,
    decoding them to a ``str`` and framing its encoding took three passes
    over it on the event loop (~0.1 s each at that size) and held two copies
    while clients read it. Sent as it is to every client it is queued for;
    ``str()`` decodes it (for tests and logs)."""

    __slots__ = ("wire", "nbytes", "__weakref__")

    def __init__(self, pieces: list[bytes]) -> None:
        self.nbytes = sum(map(len, pieces))
        """Bytes of its text (its UTF-8: what orjson wrote)."""
        self.wire = b"".join([text_frame_header(self.nbytes), *pieces])
        """The whole WebSocket frame: its header, then its text."""

    def __len__(self) -> int:
        return self.nbytes

    def __str__(self) -> str:
        return str(memoryview(self.wire)[len(self.wire) - self.nbytes:], "utf-8")

    def __repr__(self) -> str:
        return f"<PreFramed: {self.nbytes} bytes of text>"


def text_frame_header(length: int) -> bytes:
    """The header of a server's whole text frame of ``length`` payload bytes
    (RFC 6455 5.2: FIN, opcode 1, no mask; the length in 7, 16 or 64 bits),
    as wsproto writes it (``tests/http/test_websocket_frames.py`` compares them)."""
    if length <= 125:
        return bytes((0x81, length))
    if length <= 0xFFFF:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


Frame = str | PreFramed
"""A text frame: browsers hand binary frames to scripts as Blobs, not strings.
Built (and decoded, unless ``PreFramed``) once, then shared by every client it goes to."""


class SharedFrame(str):
    """A text frame built once and sent to many clients (diffs, resets, pings).

    Sent as a plain ``str``, every client's send would encode it to UTF-8 and
    copy it into a WebSocket frame again (wsproto makes four copies): for the
    reset of a 1,000-host view, 0.9 MB of work and memory per client, held
    until that client has read it. The WebSocket transport
    (``trioscope.http``) instead frames it once, keeps the frame's bytes in
    ``wire`` and hands every client the same bytes.

    orjson refuses ``str`` subclasses: parse ``str(frame)``."""

    wire: bytes | None = None
    """The whole WebSocket frame, set by the transport on first send."""
    encoded: bytes | None = None
    """Its UTF-8 encoding until the transport has framed it (``shared`` keeps
    the bytes it was made of): framed as they are, not encoded again (a
    processes view's first view is 100 MB and more)."""
    nbytes: int = 0
    """Bytes of its UTF-8 encoding (what the access log counts per client,
    without encoding it per client)."""


def shared(data: bytes) -> SharedFrame:
    """The frame whose UTF-8 encoding is ``data``."""
    frame = SharedFrame(data.decode())
    frame.encoded = data
    frame.nbytes = len(data)
    return frame


def message(kind: str, payload: Any) -> Frame:
    return shared(orjson.dumps({"type": kind, "payload": payload}))


def error_frame(code: str, text: str) -> Frame:
    return message("error", {"code": code, "message": text})


PING = message("ping", {})
PONG = message("pong", {})


def reset_frame(snapshot: TopologySnapshot, view: View | None, flt: Filter | None = None,
                visibility: Visibility | None = None) -> Frame:
    """The whole view (``payload.reset: true``), what a client starts from."""
    return shared(b"".join(reset_chunks(snapshot, view, flt, visibility=visibility)))


RESET_BATCH = 1024
"""Nodes or edges looked at per piece of a reset: a few milliseconds of work."""


def reset_chunks(snapshot: TopologySnapshot, view: View | None, flt: Filter | None = None,
                 batch: int = RESET_BATCH, *, visibility: Visibility | None = None) -> Iterator[bytes]:
    """``reset_frame`` in pieces that join into it, each the work of looking at
    ``batch`` nodes or edges (a piece may be empty: a filter that matches little
    still has every node to look at). A reset of a large view is the costliest
    thing a client can ask for: whoever builds it can stop between two pieces,
    when the client has gone, instead of finishing a frame nobody will read."""
    yield b'{"type":"topology_update","payload":'
    if (flt is None or flt.empty) and visibility is None:
        yield from snapshot.payload_chunks(view, batch, extra={"reset": True})
        yield b"}"
        return
    flt = flt or Filter()
    matched: set[str] = set()
    if visibility is not None:
        visibility.shown = matched  # what the client holds once this reset is read
    yield b'{"nodes":{'
    first = True
    nodes = snapshot.nodes(view)
    while batch_nodes := list(islice(nodes, batch)):
        entries = []
        for node in batch_nodes:
            if flt.matches(node) and (visibility is None or visibility.node(node)):
                matched.add(node.id)
                entries.append(node.entry())
        yield (b"" if first or not entries else b",") + b",".join(entries)
        first = first and not entries
    yield b'},"edges":{'
    first = True
    edges = snapshot.edges(view)
    while batch_edges := list(islice(edges, batch)):
        kept = [e for e in batch_edges if e.source in matched and e.target in matched]
        yield (b"" if first or not kept else b",") + orjson.dumps({e.id: e.json() for e in kept})[1:-1]
        first = first and not kept
    tail = {"reset": True, "version": snapshot.version, "view": view.value if view is not None else "all"}
    yield b"}," + orjson.dumps(tail)[1:] + b"}"


def _kinds(view: View | None) -> set[NodeKind]:
    return {view.kind} if view is not None else set(WHOLE_KINDS)


def diff_frame(diff: TopologyDiff, view: View | None, flt: Filter | None = None,
               visibility: Visibility | None = None, *, snapshot: TopologySnapshot | None = None) -> Frame:
    """The diff as one client of ``view`` (with ``flt``) sees it. Sent even when
    it holds nothing for that view, so that every client's versions stay
    consecutive and a gap always means a lost update.

    A client with a filter, or one that may not see everything, holds part of
    the view, and its diff must take it from what it holds to what a reset at
    ``diff.version`` would give it. ``visibility`` says what it holds (and is
    brought up to date; ``Visibility()`` for a filter alone), and ``snapshot``,
    the version the diff leads to, has the edges the diff does not carry that
    join a node it starts or stops holding to one it holds. Without
    ``visibility`` the filter sees only the diff: a node that starts matching
    comes as an update, and the edges are those of the view, whatever the
    client holds."""
    if visibility is not None:
        return _held_diff_frame(diff, view, flt or Filter(), visibility, snapshot)
    kinds = _kinds(view)

    def node_ok(node: Node) -> bool:
        return node.kind in kinds and (flt is None or flt.matches(node))

    def id_ok(node_id: str) -> bool:
        return NodeKind(node_id.partition(":")[0]) in kinds

    def edge_ok(edge_id: str) -> bool:
        return edge_kind(edge_id) in kinds

    add_nodes = {i: n.json() for i, n in diff.nodes_added.items() if node_ok(n)}
    update_nodes = {i: n.json() for i, n in diff.nodes_updated.items() if node_ok(n)}
    remove_nodes = [i for i in diff.nodes_removed if id_ok(i)]
    if flt is not None and not flt.empty:
        # A node that stops matching leaves the client's view.
        remove_nodes += [i for i, n in diff.nodes_updated.items() if id_ok(i) and not flt.matches(n)]
    add_edges = {i: e.json() for i, e in diff.edges_added.items() if edge_ok(i)}
    update_edges = {i: e.json() for i, e in diff.edges_updated.items() if edge_ok(i)}
    remove_edges = [i for i in diff.edges_removed if edge_ok(i)]
    return _diff_message(diff, view, (add_nodes, add_edges), (update_nodes, update_edges), (remove_nodes, remove_edges))


def _held_diff_frame(diff: TopologyDiff, view: View | None, flt: Filter, held: Visibility,
                     snapshot: TopologySnapshot | None) -> Frame:
    kinds = _kinds(view)
    shown = held.shown
    texts = SearchTexts.of_version(snapshot) if snapshot is not None and flt.search else None
    add_nodes: dict[str, Any] = {}  # also the nodes the client starts holding with this diff
    update_nodes: dict[str, Any] = {}
    remove_nodes: list[str] = []
    for node in (*diff.nodes_added.values(), *diff.nodes_updated.values()):
        if node.kind not in kinds:
            continue
        if flt.matches(node, texts) and held.node(node):
            if node.id in shown:
                update_nodes[node.id] = node.json()
            else:
                add_nodes[node.id] = node.json()
                shown.add(node.id)
        elif node.id in shown:  # it stopped matching, or being the client's to see
            shown.discard(node.id)
            remove_nodes.append(node.id)
    for node_id in diff.nodes_removed:
        if node_id in shown:
            shown.discard(node_id)
            remove_nodes.append(node_id)
    left = set(remove_nodes)

    # An edge is the client's while it holds both ends: it has one before this
    # diff if the edge existed and it held both ends then, and one after if the
    # edge exists and it holds both ends now. Where the two differ the edge is
    # added or removed, whether or not the edge itself changed.
    def held_before(node_id: str) -> bool:
        return node_id in left or (node_id in shown and node_id not in add_nodes)

    add_edges: dict[str, Any] = {}
    update_edges: dict[str, Any] = {}
    remove_edges: list[str] = []

    def place(edge_id: str, edge: Edge) -> None:  # an edge there before and after this diff
        if edge.source in shown and edge.target in shown:
            if held_before(edge.source) and held_before(edge.target):
                update_edges[edge_id] = edge.json()
            else:
                add_edges[edge_id] = edge.json()
        elif held_before(edge.source) and held_before(edge.target):
            remove_edges.append(edge_id)

    for edge_id, edge in diff.edges_added.items():
        if edge.source in shown and edge.target in shown:
            add_edges[edge_id] = edge.json()
    for edge_id, edge in diff.edges_updated.items():
        place(edge_id, edge)
    for edge_id in diff.edges_removed:
        source, _, target = edge_id.partition("->")
        if held_before(source) and held_before(target):
            remove_edges.append(edge_id)
    if snapshot is not None and (add_nodes or left):
        # The edges that did not change are not in the diff; those of a node
        # the client starts or stops holding are in the snapshot.
        for edge in EdgeIndex.of_version(snapshot).edges(snapshot, add_nodes.keys() | left):
            edge_id = edge.id
            if edge_id not in diff.edges_added and edge_id not in diff.edges_updated:
                place(edge_id, edge)
    return _diff_message(diff, view, (add_nodes, add_edges), (update_nodes, update_edges), (remove_nodes, remove_edges))


_VIEW_OF_KIND = {view.kind: view for view in View}
"""The view of each kind's nodes: the one the edges between them are in."""


SCANS_BEFORE_INDEX = 8
"""Lookups of one view's edges by node at a version with no index to follow
(``EdgeIndex``) that scan the view before one is built for the rest."""

EdgeKey = tuple[str, str]
_ByNode = dict[str, dict[str, tuple[EdgeKey, ...]]]
"""A view's edges by node: shard (``_shard``) -> node id -> the (source,
target) of its edges."""


class EdgeIndex:
    """The edges of one version by node, per view: what a client with a
    filter looks up for the nodes that start or stop matching (their edges
    that did not change are in no diff). Made once per version and view, on
    first use, and shared by every client of that version (``of_version``).

    Where the hub has the index of the version before (``follow``), it is
    made from that one and the diff between them: the shards the diff's
    added and removed edges touch are copied, the others shared, so a
    version costs what changed, not what the view holds (a scan of the
    processes view's 39,000 edges at 200 hosts took ~15 ms, and the first
    lookups of each version scanned it once per client). Without one, the
    first ``SCANS_BEFORE_INDEX`` lookups scan, and then the index is built
    from the version's edges, once.

    Shards as ``TopologySnapshot``'s: a process's edges are kept under its
    host (``process:<hostname>``), so a host's report copies that host's part.
    """

    __slots__ = ("_base", "_diff", "_views", "_scans")

    def __init__(self, base: EdgeIndex | None = None, diff: TopologyDiff | None = None) -> None:
        self._base = base
        """The previous version's (None: nothing to follow)."""
        self._diff = diff
        """From the previous version to this one."""
        self._views: dict[View, _ByNode] = {}
        self._scans: dict[View, int] = {}

    @staticmethod
    def of_version(snapshot: TopologySnapshot) -> EdgeIndex:
        """The index of ``snapshot``'s version (made, without one to follow, if it has none)."""
        return snapshot.derived(_EDGE_INDEX, EdgeIndex)

    @staticmethod
    def follow(previous: TopologySnapshot, diff: TopologyDiff, snapshot: TopologySnapshot) -> EdgeIndex:
        """The index of ``snapshot``, made when first used from the one of
        ``previous`` (``diff`` leads from it to ``snapshot``). Each index holds
        the one before it until the next is made: at most two are followed back."""
        index = snapshot.kept(_EDGE_INDEX)
        if index is None and diff.previous_version == previous.version and diff.version == snapshot.version:
            base = EdgeIndex.of_version(previous)
            if base._base is not None:
                base._base._base = base._base._diff = None
            index = snapshot.keep(_EDGE_INDEX, EdgeIndex(base, diff))
        return index if index is not None else EdgeIndex.of_version(snapshot)

    def edges(self, snapshot: TopologySnapshot, node_ids: set[str]) -> Iterator[Edge]:
        """The edges in ``snapshot`` (this index's version) with an end in ``node_ids``, each once."""
        by_view: dict[View, set[str]] = {}
        for node_id in node_ids:
            by_view.setdefault(_VIEW_OF_KIND[kind_of(node_id)], set()).add(node_id)
        for view, ids in by_view.items():
            index = self._followed(view)
            if index is None:
                if self._base is None:
                    scans = self._scans[view] = self._scans.get(view, 0) + 1
                    if scans <= SCANS_BEFORE_INDEX:
                        # An edge joins two nodes of its view's kind: each is found once.
                        yield from (e for e in snapshot.edges(view) if e.source in ids or e.target in ids)
                        continue
                index = self._views[view] = _indexed(snapshot, view)
            edges = snapshot.edges_of(view)
            seen: set[EdgeKey] = set()
            for node_id in ids:
                for key in index.get(_shard(node_id), {}).get(node_id, ()):
                    if key not in seen:
                        seen.add(key)
                        edge = edges.get(key)
                        if edge is not None:
                            yield edge

    def _followed(self, view: View) -> _ByNode | None:
        """The index of ``view``, if made, or made from the previous version's."""
        index = self._views.get(view)
        if index is None and self._base is not None and self._diff is not None:
            before = self._base._followed(view)
            if before is not None:
                index = self._views[view] = _carried(before, self._diff, view)
        return index


_EDGE_INDEX = ("live edge index",)


def _shard(node_id: str) -> str:
    return node_id.rpartition(":")[0]


def _indexed(snapshot: TopologySnapshot, view: View) -> _ByNode:
    """The edges of ``view`` in ``snapshot`` by node."""
    lists: dict[str, dict[str, list[EdgeKey]]] = {}
    for key in snapshot.edges_of(view):
        source, target = key
        lists.setdefault(_shard(source), {}).setdefault(source, []).append(key)
        if target != source:
            lists.setdefault(_shard(target), {}).setdefault(target, []).append(key)
    return {shard: {node: tuple(keys) for node, keys in nodes.items()} for shard, nodes in lists.items()}


def _carried(before: _ByNode, diff: TopologyDiff, view: View) -> _ByNode:
    """``before`` after ``diff``'s edges of ``view`` were added and removed
    (an edge updated was there before and is after: nothing to do)."""
    kind = view.kind
    changes: dict[str, list[tuple[EdgeKey, bool]]] = {}
    for edge_id in diff.edges_removed:
        if edge_kind(edge_id) is kind:
            source, _, target = edge_id.partition("->")
            _note(changes, (source, target), False)
    for edge_id, edge in diff.edges_added.items():
        if edge_kind(edge_id) is kind:
            _note(changes, (edge.source, edge.target), True)
    if not changes:
        return before
    after = dict(before)
    copied: set[str] = set()
    for node_id, node_changes in changes.items():
        shard = _shard(node_id)
        if shard not in copied:
            copied.add(shard)
            after[shard] = dict(after.get(shard, {}))
        nodes = after[shard]
        keys = dict.fromkeys(nodes.get(node_id, ()))
        for key, present in node_changes:
            if present:
                keys[key] = None
            else:
                keys.pop(key, None)
        if keys:
            nodes[node_id] = tuple(keys)
        else:
            nodes.pop(node_id, None)
    for shard in copied:
        if not after[shard]:
            del after[shard]
    return after


def _note(changes: dict[str, list[tuple[EdgeKey, bool]]], key: EdgeKey, present: bool) -> None:
    changes.setdefault(key[0], []).append((key, present))
    if key[1] != key[0]:
        changes.setdefault(key[1], []).append((key, present))


def _diff_message(diff: TopologyDiff, view: View | None, add: tuple[Any, Any], update: tuple[Any, Any],
                  remove: tuple[Any, Any]) -> Frame:
    """The ``topology_update`` of ``diff``; ``add``, ``update`` and ``remove`` are (nodes, edges)."""
    return message("topology_update", {
        "version": diff.version,
        "previous_version": diff.previous_version,
        "view": view.value if view is not None else "all",
        "add": {"nodes": add[0], "edges": add[1]},
        "update": {"nodes": update[0], "edges": update[1]},
        "remove": {"nodes": remove[0], "edges": remove[1]},
    })


def report_frame(agent_id: str, hostname: str, timestamp: str, summary: Mapping[str, float]) -> Frame:
    return message("report_update", {"agent_id": agent_id, "hostname": hostname, "timestamp": timestamp,
                                     "summary": dict(summary)})

