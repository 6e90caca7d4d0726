"""What one report is on the bus: the validated report (its wire form, as
``trioscope.wire.encode`` gives it, as JSON compressed with zlib) with when it
was received and whether an enrolled agent signed it, framed with msgpack.

Not the JSON the agent sent: what is on the stream has passed validation. The
compressed wire form is ~8x smaller than the JSON (the stream keeps an hour of
every agent's reports), and it is what a probe's actor keeps as its latest
report anyway (``PackedReport``): a replica reading it hands it on as it is.
Measured for a typical report (bench/RESULTS.md, issue 20): msgpack of the
whole wire form is larger and slower to read back than this (orjson parses
faster than msgpack unpacks). The receive time travels with it, so a replica
that replays the stream records metric history at the times it was received.
"""

from __future__ import annotations

import zlib
from typing import Any

import attrs
import msgpack
import orjson

from trioscope.domain.agents import PackedReport
from trioscope.wire import InvalidDocument, Report, decode_report, encode

FORMAT = 1
"""The envelope's layout; a replica skips envelopes of a layout it does not know."""


@attrs.frozen
class Envelope:
    report: Report
    received_at: float
    enrolled: bool
    packed: PackedReport
    """The report's wire form, compressed (what the probe's actor keeps as its latest report)."""


class BadEnvelope(ValueError):
    """A message on the stream that is not a report envelope this version reads."""


def pack_report(report: Report, received_at: float, enrolled: bool) -> tuple[bytes, PackedReport]:
    """The envelope, and the packed wire form in it."""
    packed = PackedReport(zlib.compress(orjson.dumps(encode(report)), 1))
    data: bytes = msgpack.packb({"format": FORMAT, "report": packed.data, "received_at": received_at,
                                 "enrolled": enrolled})
    return data, packed


def unpack_report(data: bytes) -> Envelope:
    """Raises ``BadEnvelope`` for anything but an envelope of ``FORMAT``."""
    try:
        message: Any = msgpack.unpackb(data)
        if not isinstance(message, dict) or message.get("format") != FORMAT:
            raise BadEnvelope(f"not a report envelope of format {FORMAT}")
        packed = PackedReport(bytes(message["report"]))
        report = decode_report(orjson.loads(packed.unpack()))
        return Envelope(report, float(message["received_at"]), bool(message["enrolled"]), packed)
    except (ValueError, KeyError, TypeError, InvalidDocument, zlib.error, msgpack.UnpackException) as exc:
        raise BadEnvelope(str(exc)) from None
