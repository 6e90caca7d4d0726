"""A report read back from the stream has its connections decoded only when
something uses them (``unpack_report(..., defer_connections=True)``, what the
report feed asks for): a report of its host's last shape is merged, and its
host metrics found, without them."""

from __future__ import annotations

import time
from typing import Any
import zlib

import attrs
import msgspec
import orjson
import pytest

from tests.synthetic import host_report
from trioscope.bus import pack_report, unpack_report
from trioscope.bus._connections import PendingConnections
from trioscope.bus._envelope import _Network, _ReadBack
from trioscope.domain.agents import host_metrics
from trioscope.domain.topology import TopologyGraph, report_shape
from trioscope.wire import NetworkInfo, Report, decode_report, encode


def _report(index: int, at: float, cpu: float = 25.0) -> Report:
    """A host of 200 connections, most of them to two other hosts."""
    return decode_report(host_report(index, timestamp=at, cpu=cpu, peers=(index + 1, index + 2)))


def _seen(graph: TopologyGraph, now: float) -> tuple[dict[str, Any], list[Any]]:
    """The graph's nodes and edges, as published."""
    snapshot, _ = graph.publish(now)
    return {node.id: node for node in snapshot.nodes()}, sorted(map(repr, snapshot.edges()))


def _read_back(report: Report) -> Report:
    data, _ = pack_report(report, time.time(), enrolled=False, shape=report_shape(report))
    return unpack_report(data, defer_connections=True).report


def _connections(report: Report) -> PendingConnections:
    assert report.network_info is not None
    connections = report.network_info.connections
    assert isinstance(connections, PendingConnections)
    return connections


def test_a_report_of_its_host_s_last_shape_is_merged_without_its_connections_being_read() -> None:
    now = time.time()
    first, second = _report(1, now - 20), _report(1, now - 10, cpu=60.0)
    assert report_shape(first) == report_shape(second)  # new metrics only
    graph, full = TopologyGraph(now=now), TopologyGraph(now=now)
    for each in (graph, full):
        each.apply(first, now - 20)
    read = _read_back(second)
    data, _ = pack_report(second, now, enrolled=False, shape=report_shape(second))
    shape = unpack_report(data).shape
    assert host_metrics(read) == host_metrics(second)  # their number, without them
    assert graph.apply(read, now - 10, shape=shape)
    assert not _connections(read).decoded
    assert full.apply(second, now - 10)
    assert _seen(graph, now) == _seen(full, now)


def test_a_report_of_another_shape_reads_them_and_is_merged_as_the_full_report_is() -> None:
    now = time.time()
    report = _report(2, now - 10)
    read = _read_back(report)
    fresh, full = TopologyGraph(now=now), TopologyGraph(now=now)
    for graph in (fresh, full):  # the hosts it connects to
        for peer in (3, 4):
            graph.apply(_report(peer, now - 10), now - 10)
    assert fresh.apply(read, now - 10) and full.apply(report, now - 10)
    assert _connections(read).decoded
    assert _seen(fresh, now) == _seen(full, now) and _seen(full, now)[1]  # with edges


def test_they_read_as_the_report_s_connections_do() -> None:
    report = _report(3, time.time())
    read = _read_back(report)
    assert report.network_info is not None
    expected = report.network_info.connections
    assert len(_connections(read)) == len(expected) == 200 and not _connections(read).decoded
    assert read == report and report == read  # either side of the comparison
    assert list(_connections(read)) == expected and _connections(read)[3] == expected[3]
    assert _connections(read)[-2:] == expected[-2:]
    assert _connections(read) != expected[:-1]


def test_a_connection_the_http_edge_would_refuse_fails_where_it_is_read_naming_the_field() -> None:
    document = encode(_report(4, time.time()))
    document["network_info"]["connections"][7]["local_port"] = "http"
    data = msgspec.msgpack.encode({"format": 1, "report": zlib.compress(orjson.dumps(document)),
                                   "received_at": time.time(), "enrolled": False})
    read = unpack_report(data, defer_connections=True).report  # the rest of the report is read
    with pytest.raises(ValueError, match=r"network_info\.connections.*\$\[7\]\.local_port"):
        list(_connections(read))
    graph = TopologyGraph(now=time.time())
    with pytest.raises(ValueError, match=r"network_info\.connections"):
        graph.apply(read, time.time())


def test_the_read_back_record_has_the_report_s_fields_and_defaults() -> None:
    """``_ReadBack`` stands for ``Report`` where it is read back: a field
    added to one and not the other would be dropped on every replica."""
    fields = {f.name: f.default for f in msgspec.structs.fields(_ReadBack)}
    expected = {a.name: (msgspec.NODEFAULT if a.default is attrs.NOTHING else a.default) for a in attrs.fields(Report)}
    assert fields == expected
    # And its network part NetworkInfo's (the probe's own namespace was dropped: every
    # replica but the receiving one resolved the report's sockets without namespaces).
    network = {f.name: f.default_factory() if f.default_factory is not msgspec.NODEFAULT else f.default
               for f in msgspec.structs.fields(_Network)}
    assert network == {a.name: a.default.factory() if isinstance(a.default, attrs.Factory) else a.default
                       for a in attrs.fields(NetworkInfo)}
