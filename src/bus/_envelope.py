"""What one report is on the bus: the validated report (the wire model, as
``trioscope.wire.encode`` gives it) with when it was received and whether an
enrolled agent signed it, packed with msgpack. Not the JSON the agent sent:
what is on the stream has passed validation, and msgpack is smaller and faster
to read than JSON. The receive time travels with it, so a replica that replays
the stream records metric history at the times it was received."""

from __future__ import annotations

from typing import Any

import attrs
import msgpack

from trioscope.wire import InvalidDocument, Report, decode_report, encode

FORMAT = 1
"""The envelope's layout; a replica skips envelopes of a layout it does not know."""


@attrs.frozen
class Envelope:
    report: Report
    received_at: float
    enrolled: bool
    document: dict[str, Any] = attrs.field(repr=False, eq=False)
    """The report's wire form (what the probe's actor keeps as its latest report)."""


class BadEnvelope(ValueError):
    """A message on the stream that is not a report envelope this version reads."""


def pack_report(report: Report, received_at: float, enrolled: bool) -> bytes:
    packed: bytes = msgpack.packb({"format": FORMAT, "report": encode(report), "received_at": received_at,
                                   "enrolled": enrolled})
    return packed


def unpack_report(data: bytes) -> Envelope:
    """Raises ``BadEnvelope`` for anything but an envelope of ``FORMAT``."""
    try:
        message = msgpack.unpackb(data)
        if not isinstance(message, dict) or message.get("format") != FORMAT:
            raise BadEnvelope("not a report envelope of format 1")
        document = message["report"]
        return Envelope(decode_report(document), float(message["received_at"]), bool(message["enrolled"]), document)
    except (ValueError, KeyError, TypeError, InvalidDocument, msgpack.UnpackException) as exc:
        raise BadEnvelope(str(exc)) from None
