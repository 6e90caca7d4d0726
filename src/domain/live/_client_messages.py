"""What clients may ask: their messages, parsed and validated
(``parse_client_message``), and the subscription they make
(``subscribe``, ``unsubscribe``)."""

from __future__ import annotations

import attrs
import orjson

from trioscope.domain.topology import View

from ._filter import Filter


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
class Subscription:
    """What one client follows."""

    topology: bool = True
    reports: bool = False
    agents: frozenset[str] = frozenset()
    view: View | None = None
    filter: Filter = Filter()  # noqa: RUF009 - Filter is frozen: one default shared by every subscription

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
