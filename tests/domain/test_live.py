"""The pure part of live updates: diff composition, client messages, filters."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.domain.test_topology_properties import T0, reports, state
from tests.synthetic import host_report
from trioscope.domain.live import (
    MAX_SUBSCRIBED,
    MAX_TOPICS,
    BadClientMessage,
    Filter,
    ResetThrottle,
    SharedFrame,
    Subscribe,
    Subscription,
    ViewAdmission,
    diff_frame,
    message,
    parse_client_message,
    reset_chunks,
    reset_frame,
    subscribe,
    unsubscribe,
)
from trioscope.domain.topology import Node, NodeKind, TopologyGraph, View
from trioscope.wire import Report, decode_report


@settings(max_examples=200, deadline=None)
@given(reports(count=(2, 10)), st.lists(st.booleans(), min_size=10, max_size=10), st.integers(0, 9))
def test_composed_diffs_equal_the_diffs_applied_one_by_one(
    sequence: list[Report], publish_after: list[bool], start: int
) -> None:
    graph = TopologyGraph()
    diffs = []
    for report, publish in zip(sequence, publish_after):
        graph.apply(report, T0)
        if publish:
            _, diff = graph.publish(T0)
            if diff is not None:
                diffs.append(diff)
    _, diff = graph.publish(T0)
    if diff is not None:
        diffs.append(diff)
    if not diffs:
        return
    start = min(start, len(diffs) - 1)
    # A client holding the state before diffs[start] applies their composition.
    one_by_one: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    for d in diffs[:start]:
        d.apply_to(*one_by_one)
    composed_state = (dict(one_by_one[0]), dict(one_by_one[1]))
    for d in diffs[start:]:
        d.apply_to(*one_by_one)
    composed = diffs[start]
    for d in diffs[start + 1:]:
        composed = composed.then(d)
    assert composed.previous_version == diffs[start].previous_version and composed.version == diffs[-1].version
    composed.apply_to(*composed_state)
    assert composed_state == one_by_one == state(graph)


def test_composing_out_of_order_diffs_is_refused():
    graph = TopologyGraph()
    from tests.domain.test_topology import report

    graph.apply(report("a", "h1"), T0)
    _, first = graph.publish(T0)
    graph.apply(report("b", "h2"), T0)
    _, second = graph.publish(T0)
    with pytest.raises(ValueError, match="cannot compose"):
        second.then(first)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{", "invalid_json"),
        ('"ping"', "invalid_message"),
        ('{"type": 3}', "unknown_type"),
        ('{"type": "subscribe", "view": "galaxies"}', "invalid_view"),
        ('{"type": "subscribe", "topics": [1]}', "invalid_topics"),
        ('{"type": "subscribe", "topics": ["topology", "gossip"]}', "invalid_topics"),
        ('{"type": "subscribe", "filter": []}', "invalid_filter"),
        ('{"type": "subscribe", "filter": {"labels": {"a": 1}}}', "invalid_filter"),
        ('{"type": "subscribe", "filter": {"min_metrics": {"cpu": "high"}}}', "invalid_filter"),
    ],
)
def test_bad_client_messages_name_the_problem(text, code):
    with pytest.raises(BadClientMessage) as bad:
        parse_client_message(text)
    assert bad.value.code == code and bad.value.message


def test_subscribe_and_unsubscribe_change_topics_view_and_filter():
    start = Subscription()
    request = parse_client_message(orjson.dumps({
        "type": "subscribe", "topics": ["reports", "agent:a1", "node:host:h1"], "view": "hosts",
        "filter": {"search": "web", "labels": {"tier": "front"}, "min_metrics": {"cpu_percent": 50}},
    }))
    assert isinstance(request, Subscribe)
    after = subscribe(start, request)
    assert after.reports and after.agents == {"a1"} and after.view is View.HOSTS
    assert after.filter == Filter(search="web", labels={"tier": "front"}, min_metrics={"cpu_percent": 50.0},
                                  ids=frozenset({"host:h1"}))
    kept = subscribe(after, parse_client_message('{"type": "subscribe", "topics": ["topology"]}'))
    assert kept.view is View.HOSTS  # no view given: the current one stays
    gone = unsubscribe(kept, parse_client_message('{"type": "unsubscribe", "topics": ["topology", "agent:a1"]}'))
    assert not gone.topology and gone.agents == frozenset() and gone.reports


@pytest.mark.parametrize("kind", ["agent", "node"])
def test_agent_and_node_topics_add_up_to_at_most_max_subscribed(kind: str):
    # 64 topics a message, but they accumulate: unbounded, 8,000 messages took 200 MB.
    current = Subscription()
    for batch in range(MAX_SUBSCRIBED // MAX_TOPICS):
        topics = [f"{kind}:host:{batch}-{i}" for i in range(MAX_TOPICS)]
        current = subscribe(current, parse_client_message(orjson.dumps({"type": "subscribe", "topics": topics})))
    held = len(current.agents) + len(current.filter.ids)
    assert held == MAX_SUBSCRIBED
    with pytest.raises(BadClientMessage) as refused:
        subscribe(current, parse_client_message(orjson.dumps({"type": "subscribe", "topics": [f"{kind}:one-more"]})))
    assert refused.value.code == "too_many_topics"
    freed = unsubscribe(current, parse_client_message(orjson.dumps(
        {"type": "unsubscribe", "topics": [f"{kind}:host:0-{i}" for i in range(MAX_TOPICS)]})))
    assert subscribe(freed, parse_client_message(orjson.dumps({"type": "subscribe", "topics": [f"{kind}:one-more"]})))


def node(node_id: str, label: str, **metrics: float) -> Node:
    return Node(id=node_id, kind=NodeKind(node_id.partition(":")[0]), label=label, parent=None, host=None,
                agent_id="a", status="running", last_seen=T0, metadata={"labels": {"tier": "front"}},
                metrics=metrics)


def test_filters_match_search_labels_metrics_and_ids():
    web = node("container:c1", "web-1", cpu_percent=80.0)
    assert Filter(search="WEB").matches(web)
    assert not Filter(search="db").matches(web)
    assert Filter(labels={"tier": "front"}).matches(web)
    assert not Filter(labels={"tier": "back"}).matches(web)
    assert Filter(min_metrics={"cpu_percent": 50}).matches(web)
    assert not Filter(min_metrics={"memory_mb": 1}).matches(web)
    assert not Filter(ids=frozenset({"container:c2"})).matches(web)


def test_frames_are_text_json_with_type_and_payload():
    graph = TopologyGraph()
    from tests.domain.test_topology import report

    graph.apply(report("a", "h1"), T0)
    snapshot, diff = graph.publish(T0)
    reset = orjson.loads(str(reset_frame(snapshot, View.HOSTS)))
    assert reset["type"] == "topology_update" and reset["payload"]["reset"] is True
    assert list(reset["payload"]["nodes"]) == ["host:h1"]
    frame = diff_frame(diff, View.CONTAINERS)
    assert isinstance(frame, str)
    payload = orjson.loads(str(frame))["payload"]
    assert payload["add"]["nodes"] == {} and payload["version"] == diff.version  # empty, but versions advance


def _linked_snapshot(hosts: int = 12):
    graph = TopologyGraph(T0)
    for index in range(1, hosts + 1):
        peers = [p for p in (index - 1, index + 1) if 1 <= p <= hosts]
        graph.apply(decode_report(host_report(index, timestamp=T0, containers=3, processes=12, connections=10,
                                              peers=peers)), T0)
    return graph.publish(T0)[0]


@pytest.mark.parametrize("view", [None, View.HOSTS, View.PROCESSES])
@pytest.mark.parametrize("flt", [Filter(), Filter(search="HOST-1"), Filter(search="worker-3"),
                                 Filter(search="nothing matches this")])
def test_a_reset_in_pieces_is_the_filtered_view(view, flt):
    snapshot = _linked_snapshot()
    nodes = {n.id: n for n in snapshot.nodes(view) if flt.matches(n)}
    pieces = list(reset_chunks(snapshot, view, flt, batch=7))
    payload = orjson.loads(b"".join(pieces))["payload"]
    assert payload["reset"] is True and payload["version"] == snapshot.version
    assert payload["view"] == (view.value if view else "all")
    assert payload["nodes"] == {i: orjson.loads(orjson.dumps(n.json())) for i, n in nodes.items()}
    assert payload["edges"] == {e.id: e.as_dict() for e in snapshot.edges(view)
                                if e.source in nodes and e.target in nodes}
    if flt.search == "HOST-1":
        assert payload["edges"]  # edges between matching nodes are kept
    # Each piece is the work of at most 7 nodes or edges: whoever builds it can stop in between.
    assert len(pieces) >= (snapshot.size(view)) // 7
    assert orjson.loads(str(reset_frame(snapshot, view, flt))) == orjson.loads(b"".join(pieces))


def test_resets_asked_for_coalesce_into_one_per_interval():
    throttle = ResetThrottle(interval=1.0)
    throttle.owe()
    assert throttle.due(0.0)
    throttle.sent(0.0, first=True)  # the reset a client connects with starts no interval
    throttle.owe()
    throttle.owe()
    assert throttle.due(0.1)
    throttle.sent(0.1)
    assert not throttle.owed and not throttle.due(0.2)
    for now in (0.2, 0.5, 1.0):  # asked again and again within the interval: one owed, not yet due
        throttle.owe()
        assert throttle.owed and not throttle.due(now)
    assert throttle.due(1.1)
    throttle.sent(1.1, took=3.0)  # a reset that took longer than the interval spaces the next by as much
    throttle.owe()
    assert not throttle.due(3.5) and throttle.due(4.1)
    throttle.forget()
    assert not throttle.due(5.0)


# ---- first views: admission ---------------------------------------------------------------------

def test_admission_lets_a_burst_start_at_once_then_paces_the_rest():
    admission = ViewAdmission(rate=10, max_waiting=100, burst=3)
    starts = [admission.enter(5.0) for _ in range(6)]
    assert starts == pytest.approx([5.0, 5.0, 5.0, 5.1, 5.2, 5.3])


def test_admission_refills_its_burst_while_idle():
    admission = ViewAdmission(rate=10, max_waiting=100, burst=3)
    for _ in range(6):
        admission.enter(0.0)
        admission.leave()
    assert [admission.enter(10.0) for _ in range(4)] == pytest.approx([10.0, 10.0, 10.0, 10.1])


def test_admission_refuses_beyond_the_waiting_limit_until_one_leaves():
    admission = ViewAdmission(rate=1, max_waiting=2)
    assert admission.enter(0.0) is not None and admission.enter(0.0) is not None
    assert admission.enter(0.0) is None
    assert admission.waiting == 2  # a refusal counts nothing
    admission.leave()
    assert admission.enter(0.0) is not None


def test_admission_refuses_an_address_beyond_its_share_and_admits_others():
    admission = ViewAdmission(rate=1, max_waiting=10, max_per_address=2)
    assert admission.enter(0.0, "a") is not None and admission.enter(0.0, "a") is not None
    assert admission.enter(0.0, "a") is None and admission.full_for("a") == "address"
    assert admission.waiting == 2  # a refusal counts nothing
    assert admission.enter(0.0, "b") is not None and admission.full_for("b") is None
    admission.leave("a")
    assert admission.enter(0.0, "a") is not None
    for address in ("a", "a", "b"):
        admission.leave(address)
    assert admission.waiting == 0 and admission.full_for("a") is None


@pytest.mark.parametrize(("rate", "max_waiting", "burst"), [(0, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_admission_settings_are_checked(rate, max_waiting, burst):
    with pytest.raises(ValueError, match="invalid admission"):
        ViewAdmission(rate, max_waiting, burst)


def test_a_shared_frame_is_its_text():
    frame = message("ping", {"é": 1})
    assert isinstance(frame, SharedFrame) and frame == '{"type":"ping","payload":{"é":1}}'
