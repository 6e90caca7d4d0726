"""The least a report may take, from its parsed JSON before it is decoded
(``MemoryBudget.least``, ``check_document``): never more than the footprint
the full check counts, whatever the records (duplicates, empty strings,
listening sockets taking client connections out, pids of no process), so a
report refused before decoding is one the full check would refuse too."""

from __future__ import annotations

from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.synthetic import host_report
from trioscope.wire import MemoryBudget, OverBudget, decode_report
from trioscope.wire import _footprint

T0 = "2027-01-15T08:00:00Z"
DEFAULT = MemoryBudget(limit=4 * 1024**2, history=3600.0, process_history=900.0)

# Small pools: records repeat, strings are empty or short, as at their smallest.
ADDRESSES = st.sampled_from(["", "0.0.0.0", "::", "127.0.0.1", "::1", "10.0.0.1", "10.0.0.2", "::ffff:10.0.0.1"])
PORTS = st.sampled_from([0, 53, 80, 443, 8080])
STATES = st.sampled_from(["", "ESTABLISHED", "established", "LISTEN", "listen", "TIME_WAIT", "close_wait"])
PIDS = st.integers(1, 6)
CONTAINER_IDS = st.sampled_from(["a" * 64, "b" * 64, "c" * 12])


def _optional(draw: st.DrawFn, document: dict[str, Any], key: str, value: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        document[key] = draw(value)


@st.composite
def connections(draw: st.DrawFn) -> dict[str, Any]:
    connection: dict[str, Any] = {}
    _optional(draw, connection, "protocol", st.sampled_from(["tcp", "udp", "tcp6", "udp6"]))
    _optional(draw, connection, "local_address", ADDRESSES)
    _optional(draw, connection, "local_port", PORTS)
    _optional(draw, connection, "remote_address", ADDRESSES)
    _optional(draw, connection, "remote_port", PORTS)
    _optional(draw, connection, "state", STATES)
    _optional(draw, connection, "pid", PIDS)
    return connection


@st.composite
def containers(draw: st.DrawFn) -> dict[str, Any]:
    container: dict[str, Any] = {"id": draw(CONTAINER_IDS)}
    _optional(draw, container, "labels", st.sampled_from([{}, {"io.kubernetes.pod.name": "p", "app": "a"}]))
    _optional(draw, container, "networks", st.just([{"name": "n", "ip_address": "172.17.0.2"}]))
    return container


@st.composite
def reports(draw: st.DrawFn) -> dict[str, Any]:
    document: dict[str, Any] = {"agent_id": "least", "timestamp": T0}
    if draw(st.booleans()):
        document["host_info"] = {"ip_addresses": draw(st.lists(ADDRESSES, max_size=3))}
    if draw(st.booleans()):
        document["docker_info"] = {"containers": draw(st.lists(containers(), max_size=6))}
    if draw(st.booleans()):
        document["processes_info"] = {"processes": draw(st.lists(st.builds(lambda pid: {"pid": pid}, PIDS),
                                                                 max_size=8))}
    if draw(st.booleans()):
        document["network_info"] = {"connections": draw(st.lists(connections(), max_size=40))}
    return document


@settings(max_examples=400, deadline=None)
@given(reports())
def test_the_least_is_never_above_the_footprint_part_by_part(document: dict[str, Any]) -> None:
    body = orjson.dumps(document)
    least = DEFAULT.least(document, len(body))
    exact = DEFAULT.footprint(decode_report(document), len(body))
    assert least.bytes <= exact.bytes
    for part in ("nodes", "endpoints", "outgoing", "views", "items", "text"):
        assert getattr(least, part) <= getattr(exact, part), part


@settings(max_examples=200, deadline=None)
@given(reports())
def test_a_report_the_full_check_accepts_is_never_refused_early(document: dict[str, Any]) -> None:
    """At a budget the report exactly fits, looking at a few records at a time
    (the staged look: a prefix counts no more than the whole)."""
    body = orjson.dumps(document)
    exact = DEFAULT.footprint(decode_report(document), len(body))
    fitting = MemoryBudget(limit=exact.bytes, history=DEFAULT.history, process_history=DEFAULT.process_history)
    with mock.patch.object(_footprint, "EARLY_RECORDS", 2), mock.patch.object(_footprint, "EARLY_BEYOND", 0):
        fitting.check_document(document, len(body))
    fitting.check(decode_report(document), body)


def test_a_report_of_distinct_client_connections_is_refused_after_its_first_records() -> None:
    """The review's report: 68,000 connections to 62,500 distinct far ends
    (~85 MiB estimated), refused on the first ``EARLY_RECORDS`` of them, with
    the parts the 413 names."""
    document = _connections_report([{"local_address": "10.9.9.9", "local_port": 1000 + i % 60000,
                                     "remote_address": f"10.{i % 250}.{i // 250 % 250}.1", "remote_port": 80,
                                     "state": "ESTABLISHED"} for i in range(68_000)])
    body = orjson.dumps(document)
    with pytest.raises(OverBudget) as raised:
        DEFAULT.check_document(orjson.loads(body), len(body))
    least = raised.value.footprint
    assert least.outgoing == _footprint.EARLY_RECORDS
    assert "at least" in str(raised.value) and "an agent may take 4.0 MiB" in str(raised.value)
    assert least.bytes <= DEFAULT.footprint(decode_report(document), len(body)).bytes


def test_a_report_of_one_connection_repeated_is_refused_by_its_text() -> None:
    """Duplicates make one client connection, but each keeps its strings."""
    connection = {"local_address": "10.9.9.9", "local_port": 40000, "remote_address": "10.1.2.3",
                  "remote_port": 80, "state": "ESTABLISHED"}
    document = _connections_report([connection] * 68_000)
    body = orjson.dumps(document)
    with pytest.raises(OverBudget) as raised:
        DEFAULT.check_document(document, len(body))
    assert raised.value.footprint.outgoing == 1
    with pytest.raises(OverBudget):
        DEFAULT.check(decode_report(document), body)


def test_a_large_realistic_host_is_not_looked_at() -> None:
    """Its lists' lengths cannot reach ``EARLY_BEYOND`` times the budget: no
    pass over its records, which would add a third to decoding it."""
    document = host_report(1, timestamp=1_800_000_000.0, containers=20, processes=300, connections=2000, peers=[2])
    with mock.patch.object(_footprint, "_Tally", side_effect=AssertionError("looked at")):
        assert DEFAULT.check_document(document, len(orjson.dumps(document))) is None


@pytest.mark.parametrize("document", [
    [], "report", {"network_info": []}, {"network_info": {"connections": [1, 2]}},
    {"network_info": {"connections": [{"state": 5}]}}, {"docker_info": {"containers": [{"name": "no id"}]}},
    {"network_info": {"connections": [{"state": "ESTABLISHED", "remote_address": ["a"]}]}},
], ids=repr)
def test_a_document_that_is_no_report_is_left_to_the_decoder(document: Any) -> None:
    """However large its JSON: the decoder says what is wrong (400), not a 413."""
    assert DEFAULT.check_document(document, 10 * 1024**2) is None


def _connections_report(connections: list[dict[str, Any]]) -> dict[str, Any]:
    return {"agent_id": "big", "hostname": "big", "timestamp": T0, "host_info": {"hostname": "big"},
            "network_info": {"connections": connections}}
