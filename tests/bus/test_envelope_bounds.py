"""Envelopes that parse but carry a receive time or a report no replica publishes: anyone
who can publish to the stream's subjects can put one there, and every replica
reads it back (at every start, for as long as the stream keeps it)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import pytest

from tests.synthetic import iso
from trioscope.bus import pack_report, unpack_report
from trioscope.bus._envelope import FORMAT, BadEnvelope, _Frame
from trioscope.domain.agents import PackedReport, check_clock
from trioscope.wire import InvalidDocument, decode_report

YEAR_9999 = datetime(9999, 12, 31, tzinfo=UTC).timestamp()
"""Still a datetime, but one a view that adds a threshold to it can no longer make."""
YEAR_8999 = datetime(8999, 12, 31, tzinfo=UTC).timestamp()


def envelope_received_at(received_at: float) -> bytes:
    """An envelope as a publisher other than a replica may write it: right
    format and types, any float for its receive time (of a report dated at
    most then, where that is a time a report may have)."""
    dated = received_at if math.isfinite(received_at) and 0.0 <= received_at <= YEAR_8999 else time.time()
    report = decode_report({"agent_id": "agent-11", "timestamp": iso(max(0.0, dated - 5))})
    _, packed = pack_report(report, time.time(), enrolled=False)
    return msgspec.msgpack.encode(_Frame(FORMAT, packed.data, received_at, False))


@pytest.mark.parametrize("received_at", [math.nan, math.inf, -math.inf, 1e18, -1e12, -1.0, YEAR_9999])
def test_an_envelope_received_at_no_time_the_views_can_show_is_a_bad_envelope(received_at: float) -> None:
    with pytest.raises(BadEnvelope, match="received_at"):
        unpack_report(envelope_received_at(received_at))


@pytest.mark.parametrize("received_at", [0.0, 7.0, 1.7e9, YEAR_8999])
def test_an_envelope_received_at_a_time_from_the_epoch_to_the_bound_is_read(received_at: float) -> None:
    assert unpack_report(envelope_received_at(received_at)).received_at == received_at


def test_a_format_this_version_does_not_read_is_a_bad_envelope_whatever_its_number() -> None:
    data = envelope_received_at(time.time())
    frame = msgspec.msgpack.decode(data)
    for number in (0, 3, -1, 2**63 - 1):
        with pytest.raises(BadEnvelope, match="format"):
            unpack_report(msgspec.msgpack.encode({**frame, "format": number}))


RECEIVED = 1.8e9
AGENT = {"agent_id": "agent-1", "timestamp": iso(RECEIVED - 5)}


def envelope_of(document: dict[str, Any], received_at: float = RECEIVED) -> bytes:
    """``document`` as the report of an envelope any NATS client can write (packed as it is)."""
    packed = PackedReport.pack(orjson.dumps(document))
    return msgspec.msgpack.encode(_Frame(FORMAT, packed.data, received_at, False))


def edge_takes(document: dict[str, Any], received_at: float = RECEIVED) -> bool:
    """Whether the HTTP edge accepts ``document`` received at ``received_at``."""
    try:
        check_clock(decode_report(document), received_at)
    except InvalidDocument:
        return False
    return True


REFUSED = [
    {"agent_id": ""}, {"agent_id": "a/b"}, {"agent_id": "x" * 129}, {"agent_id": "-a"}, {"agent_id": "a b"},
    {"agent_id": "a\n"}, {"hostname": "h" * 257}, {"host_info": {"hostname": "h" * 257}},
    {"timestamp": "9999-12-31T23:59:59.999999Z"}, {"timestamp": iso(RECEIVED + 301)},
    {"timestamp": "1969-12-31T23:59:59Z"}, {"timestamp": "0001-01-01T00:00:00Z"},
]
TAKEN = [
    {"agent_id": "a" * 128}, {"agent_id": "9.a_b:c@d-e"}, {"hostname": "h" * 256},
    {"host_info": {"hostname": "h" * 256}}, {"timestamp": iso(RECEIVED + 300)},
    {"timestamp": "1970-01-01T00:00:00Z"}, {"timestamp": "2027-01-15T08:00:00+05:00"},
]


@pytest.mark.parametrize("changes", REFUSED)
def test_a_report_the_http_edge_would_refuse_is_a_bad_envelope(changes: dict[str, Any]) -> None:
    """Its agent id names an actor, its host name and time the views' nodes
    and versions: an empty agent id crashed every replica's roster, a time of
    the year 9999 every view, at every start while the stream kept them."""
    document = {**AGENT, **changes}
    assert not edge_takes(document)
    with pytest.raises(BadEnvelope, match=r"not a valid report: \$\.(agent_id|hostname|host_info|timestamp)"):
        unpack_report(envelope_of(document))


@pytest.mark.parametrize("changes", TAKEN)
def test_a_report_the_http_edge_takes_is_read(changes: dict[str, Any]) -> None:
    document = {**AGENT, **changes}
    assert edge_takes(document)
    assert unpack_report(envelope_of(document)).report == decode_report(document)


def test_a_report_time_without_a_zone_is_a_bad_envelope() -> None:
    """msgspec reads it as a naive time, which no other time compares with
    (the edge refuses it as no RFC 3339 time)."""
    document = {**AGENT, "timestamp": "2027-01-15T08:00:00"}
    assert not edge_takes(document)
    with pytest.raises(BadEnvelope, match="no time zone"):
        unpack_report(envelope_of(document))


def test_random_bytes_are_said_to_be_no_report_envelope() -> None:
    for data in (b"\x81\xa3key\x01", b"\x93\x01\x02\x03", b"\xc1"):
        with pytest.raises(BadEnvelope, match="^not a report envelope: "):
            unpack_report(data)
