"""What one report is on the bus: the validated report (its wire form, as
JSON compressed with zlib) with when it was received and whether an enrolled
agent signed it, framed with msgpack.

Not the JSON the agent sent: what is on the stream has passed validation. The
compressed wire form is ~8x smaller than the JSON (the stream keeps an hour of
every agent's reports), and it is what a probe's actor keeps as its latest
report anyway (``PackedReport``): a replica reading it hands it on as it is.
The receive time travels with it, so a replica that replays the stream records
metric history at the times it was received.

Every replica reads every report, so reading one back is on every replica's
path: msgspec parses the wire JSON straight into the report's records, type by
type (a string where a number belongs, a missing field, an unknown
``format``: ``BadEnvelope``, the message is skipped), ~5x faster than parsing
it with orjson and structuring it with the HTTP edge's strict cattrs hooks
(bench/RESULTS.md, issue 20, bus-scale). The bounds those hooks check (lengths,
ranges, patterns) are not checked again: every report on the stream was
validated by the replica that published it, and only replicas write the
stream. Nothing is ever unpickled or evaluated. The same library writes the
frame and the wire JSON (one pass, no intermediate dicts), in the layout
``trioscope.wire.encode`` gives: replicas of the previous version read it.
"""

from __future__ import annotations

import zlib

import attrs
import msgspec

from trioscope.domain.agents import PackedReport
from trioscope.domain.topology import SHAPE_BYTES
from trioscope.wire import Report

FORMAT = 1
"""The envelope's layout; a replica skips envelopes of a layout it does not know."""


@attrs.frozen
class Envelope:
    report: Report
    received_at: float
    enrolled: bool
    packed: PackedReport
    """The report's wire form, compressed (what the probe's actor keeps as its latest report)."""
    shape: bytes | None = None
    """The report's ``report_shape``, found by the replica that published it
    (so that each replica's topology need not): None from a replica that did not send it."""


class BadEnvelope(ValueError):
    """A message on the stream that is not a report envelope this version reads."""


class _Frame(msgspec.Struct, omit_defaults=True):
    """The msgpack map around the packed report (a map, not an array: a layout
    with more keys stays readable by this one, and the previous version reads
    this one's, whose ``shape`` it does not know)."""

    format: int
    report: bytes
    received_at: float
    enrolled: bool
    shape: bytes = b""
    """``report_shape`` (16 bytes); empty from a replica of a version that did not send it."""


MAX_UNPACKED = 1024**3
"""A report's wire JSON is at most this long once decompressed: no replica
accepts a larger body (``server.max_body_size``'s bound), and a message that
inflates beyond it (a zlib bomb) is refused before it takes the memory."""

_JSON = msgspec.json.Encoder()
_FRAME = msgspec.msgpack.Encoder()
_READ_FRAME = msgspec.msgpack.Decoder(_Frame)
_READ_REPORT = msgspec.json.Decoder(Report)


def pack_report(report: Report, received_at: float, enrolled: bool,
                shape: bytes | None = None) -> tuple[bytes, PackedReport]:
    """The envelope, and the packed wire form in it."""
    packed = PackedReport(zlib.compress(_JSON.encode(report), 1))
    return _FRAME.encode(_Frame(FORMAT, packed.data, received_at, enrolled, shape or b"")), packed


def unpack_report(data: bytes) -> Envelope:
    """Raises ``BadEnvelope`` for anything but an envelope of ``FORMAT``."""
    try:
        frame = _READ_FRAME.decode(data)
        if frame.format != FORMAT:
            raise BadEnvelope(f"not a report envelope of format {FORMAT} (format {frame.format})")
        packed = PackedReport(frame.report)
        inflate = zlib.decompressobj()
        wire = inflate.decompress(packed.data, MAX_UNPACKED)
        if inflate.unconsumed_tail:
            raise BadEnvelope(f"the report inflates beyond {MAX_UNPACKED} bytes")
        report = _READ_REPORT.decode(wire)
    except (msgspec.DecodeError, zlib.error) as exc:  # ValidationError is a DecodeError
        raise BadEnvelope(str(exc)) from None
    # Any other length is no digest this version makes: found again on merging.
    shape = frame.shape if len(frame.shape) == SHAPE_BYTES else None
    return Envelope(report, frame.received_at, frame.enrolled, packed, shape)
