"""Envelopes that parse but carry a receive time no replica publishes: anyone
who can publish to the stream's subjects can put one there, and every replica
reads it back (at every start, for as long as the stream keeps it)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import msgspec
import pytest

from tests.synthetic import host_report
from trioscope.bus import pack_report, unpack_report
from trioscope.bus._envelope import FORMAT, BadEnvelope, _Frame
from trioscope.wire import decode_report

YEAR_9999 = datetime(9999, 12, 31, tzinfo=UTC).timestamp()
"""Still a datetime, but one a view that adds a threshold to it can no longer make."""
YEAR_8999 = datetime(8999, 12, 31, tzinfo=UTC).timestamp()


def envelope_received_at(received_at: float) -> bytes:
    """An envelope as a publisher other than a replica may write it: right
    format and types, any float for its receive time."""
    report = decode_report(host_report(11, timestamp=time.time() - 5))
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
