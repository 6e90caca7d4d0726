"""What one report is on the bus: the validated report (its wire form, as
JSON packed with Zstandard: ``PackedReport``) with when it was received and
whether an enrolled agent signed it, framed with msgpack.

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
stream. The frame's own receive time is checked (``unpack_report``): the
views fail on a time they cannot show, and no validation before saw it.
Nothing is ever unpickled or evaluated. The same library writes the frame
and the wire JSON (one pass, no intermediate dicts), in the layout
``trioscope.wire.encode`` gives.

Format 2 packs the report with Zstandard, format 1 (the versions before) with
zlib; both are read, so a replica of this version reads a stream written by
either. A replica of an earlier version refuses format 2 (it logs
``bus_bad_message`` and leaves the report out of its views): upgrade every
replica; the stream keeps the reports, and an upgraded replica rebuilds from it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import attrs
import msgspec

from trioscope.domain.agents import BadPack, PackedReport
from trioscope.domain.topology import SHAPE_BYTES
from trioscope.wire import Report

FORMAT = 2
"""The envelope's layout this version writes; a replica skips envelopes of a layout it does not know."""
READABLE = frozenset({1, 2})
"""Layouts this version reads: 1 differs from 2 only in how the report is packed (zlib)."""


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
    address: str | None = None
    """Where the client that sent it to the replica that published it counts
    as from (its address, or an IPv6 address's /64: ``_forwarded.source_of``):
    each replica's roster shares the agents' places between sources; None
    from a replica of a version that did not send it."""


class BadEnvelope(ValueError):
    """A message on the stream that is not a report envelope this version reads."""


class _Frame(msgspec.Struct, omit_defaults=True):
    """The msgpack map around the packed report (a map, not an array: a layout
    with more keys stays readable by this one, as the versions before ``shape``
    read envelopes that carried it)."""

    format: int
    report: bytes
    received_at: float
    enrolled: bool
    shape: bytes = b""
    """``report_shape`` (16 bytes); empty from a replica of a version that did not send it."""
    address: str = ""
    """The client's source (``Envelope.address``); empty from a replica of a version that did not send it."""


MAX_UNPACKED = 1024**3
"""A report's wire JSON is at most this long once decompressed: no replica
accepts a larger body (``server.max_body_size``'s bound), and a message that
inflates beyond it (a compression bomb) is refused before it takes the memory."""

MAX_ADDRESS = 64
"""Characters of a client address kept (an IPv6 address with a zone is well under)."""

EARLIEST_RECEIVED = 0.0
LATEST_RECEIVED = datetime(9000, 1, 1, tzinfo=UTC).timestamp()
"""The receive times an envelope may carry: the epoch on, before the year
9000. No replica publishes anything else, but anyone who can publish to the
subject can (the stream is only as closed as the NATS server), and a time the
views cannot show (NaN, infinite, past the year 9999) would make every replica
that reads it fail, at every start for as long as the stream keeps it. The
bound leaves the views millennia of room to add thresholds and windows."""

_JSON = msgspec.json.Encoder()
_FRAME = msgspec.msgpack.Encoder()
_READ_FRAME = msgspec.msgpack.Decoder(_Frame)
_READ_REPORT = msgspec.json.Decoder(Report)


def pack_report(report: Report, received_at: float, enrolled: bool,
                shape: bytes | None = None, address: str | None = None) -> tuple[bytes, PackedReport]:
    """The envelope, and the packed wire form in it."""
    packed = PackedReport.pack(_JSON.encode(report))
    frame = _Frame(FORMAT, packed.data, received_at, enrolled, shape or b"", address or "")
    return _FRAME.encode(frame), packed


def unpack_report(data: bytes) -> Envelope:
    """Raises ``BadEnvelope`` for anything but an envelope of a ``READABLE``
    format whose receive time is a finite time from ``EARLIEST_RECEIVED`` to
    ``LATEST_RECEIVED`` (``format``, the frame's only other number, is one of
    ``READABLE``)."""
    try:
        frame = _READ_FRAME.decode(data)
        if frame.format not in READABLE:
            raise BadEnvelope(f"not a report envelope of a format this version reads "
                              f"({', '.join(map(str, sorted(READABLE)))}): format {frame.format}")
        if not (math.isfinite(frame.received_at) and EARLIEST_RECEIVED <= frame.received_at < LATEST_RECEIVED):
            raise BadEnvelope(f"invalid received_at: {frame.received_at!r} (a time from {EARLIEST_RECEIVED:g} "
                              f"to {LATEST_RECEIVED:g} seconds since the epoch)")
        packed = PackedReport(frame.report)
        report = _READ_REPORT.decode(packed.unpack(MAX_UNPACKED))
    except (msgspec.DecodeError, BadPack) as exc:  # ValidationError is a DecodeError
        raise BadEnvelope(str(exc)) from None
    # Any other length is no digest this version makes: found again on merging.
    shape = frame.shape if len(frame.shape) == SHAPE_BYTES else None
    return Envelope(report, frame.received_at, frame.enrolled, packed, shape, frame.address[:MAX_ADDRESS] or None)
