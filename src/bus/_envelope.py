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
(bench/RESULTS.md, issue 20, bus-scale). Most bounds those hooks check
(lengths, ranges) are not checked again: a value past them costs a replica
memory or a report's merge (``merge_failed``), and checking every field of
every record would cost a good part of the decode. What the actors and views
rely on is checked again (``unpack_report``), since not only replicas can
write the stream (anyone the NATS server lets publish to its subjects), and a
message on it is read by every replica at every start for as long as the
stream keeps it: the receive time, the agent id (an actor's name: an empty
one made every replica's roster crash), the host name and the report's own
time (a year-9999 one made every view fail), each by the rule of the HTTP
edge, so that nothing a replica publishes is refused. Nothing is ever
unpickled or evaluated. The same library writes the frame and the wire JSON
(one pass, no intermediate dicts), in the layout ``trioscope.wire.encode``
gives. The report feed has a report's connections left undecoded until
something uses them (``PendingConnections``: a report of its host's last
shape is merged without them); one the HTTP edge would have refused then
fails that report's merge instead.

Format 2 packs the report with Zstandard, format 1 (the versions before) with
zlib; both are read, so a replica of this version reads a stream written by
either. A replica of an earlier version refuses format 2 (it logs
``bus_bad_message`` and leaves the report out of its views): upgrade every
replica; the stream keeps the reports, and an upgraded replica rebuilds from it.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import attrs
import msgspec

from trioscope.config import Settings
from trioscope.domain.agents import MAX_AHEAD, BadPack, PackedReport, check_clock
from trioscope.domain.topology import SCOPE_CHARS, SHAPE_BYTES
from trioscope.wire import (
    CHECKS, DockerInfo, FieldError, Gaps, HostInfo, HostName, Identifier, InvalidDocument, LeftOut, NetworkInfo,
    NetworkInterface, ProcessesInfo, Report, TextRule,
)

from ._connections import PendingConnections

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
    signer: str | None = None
    """The enrolled agent that signed it (None: unsigned, or from a replica of
    a version that did not send it): each replica's roster counts a probe as
    enrolled only while it is the id its agent reports under."""
    scope: str | None = None
    """The ``node_scope`` of the signer's tenant, which the report's node ids
    carry (found by the replica that published it, so that all name them
    alike); None: unsigned, or from a replica of a version that did not send it."""


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
    signer: str = ""
    """The signing agent's id (``Envelope.signer``); empty when unsigned or from a
    replica of a version that did not send it."""
    scope: str = ""
    """``Envelope.scope``; empty when unsigned or from a replica of a version that did not send it."""


WIRE_EXPANSION = 4
"""At most how many times its body a report's wire JSON is long, beyond ``RECORDS_BYTES``."""
RECORDS_BYTES = 48 * 1024**2
"""How long a report's wire JSON can be, as a replica re-encodes an accepted
body (``unpacked_limit``): at most ``WIRE_EXPANSION`` times the body plus
``RECORDS_BYTES``. The re-encoded JSON writes every field, defaults
included, so a record the body gave with few keys grows: ``{}``, a
connection, to ~111 bytes, ``{"pid":1}`` to ~165, ``{"id":"a","stats":{}}``
to ~425. Only records the model caps grow that much (at most 200,000
connections, 100,000 processes, 10,000 containers, 1,024 interfaces, 256
disks: ~41 MiB written all at their smallest); anything else grows at most
~3.2x (a published port, ``{"container_port":0}``, of which a body may hold
millions), numbers and times by a few characters. ``tests/bus/test_envelope_limits.py``
checks both against the model."""

MAX_ADDRESS = 64
"""Characters of a client address kept (an IPv6 address with a zone is well under)."""
MAX_SIGNER = 128
"""Characters of a signing agent's id (a UUID: 36); a longer one names no agent and is left out."""

EARLIEST_RECEIVED = 0.0
LATEST_RECEIVED = datetime(9000, 1, 1, tzinfo=UTC).timestamp()
"""The receive times an envelope may carry: the epoch on, before the year
9000. No replica publishes anything else, but anyone who can publish to the
subject can (the stream is only as closed as the NATS server), and a time the
views cannot show (NaN, infinite, past the year 9999) would make every replica
that reads it fail, at every start for as long as the stream keeps it. The
bound leaves the views millennia of room to add thresholds and windows."""

MAX_RECEIVED_AHEAD = 300.0
"""Seconds an envelope's receive time may lie after the clock of the replica
reading it (``unpack_report``'s ``now``): the clock skew allowed between
replicas, as much as a report's own time may lie after its receive time
(``MAX_AHEAD``, the HTTP edge's rule). A receive time further ahead was
written by no replica whose clock is right, and a report dated after it
would be its agent's newest for as long (the views keep each agent's newest
by its own time): one dated 50 years ahead froze its agent on every
replica. So a report read back is at most ``MAX_RECEIVED_AHEAD`` +
``MAX_AHEAD`` (10 minutes) ahead of the reader's clock."""

_JSON = msgspec.json.Encoder()
_FRAME = msgspec.msgpack.Encoder()
_READ_FRAME = msgspec.msgpack.Decoder(_Frame)
_READ_REPORT = msgspec.json.Decoder(Report)


class _Network(msgspec.Struct):
    """``NetworkInfo`` with its connections left as their JSON (``PendingConnections``)."""

    connections: list[msgspec.Raw] = []
    interfaces: list[NetworkInterface] = []
    netns: int | None = None
    sockets: int | None = None


class _ReadBack(msgspec.Struct):
    """``Report`` as read back with its connections left as their JSON: the
    same fields with the same defaults (a test holds them to ``Report``'s)."""

    agent_id: Identifier
    timestamp: datetime
    hostname: HostName = ""
    host_info: HostInfo | None = None
    docker_info: DockerInfo | None = None
    processes_info: ProcessesInfo | None = None
    network_info: _Network | None = None
    left_out: LeftOut | None = None
    gaps: Gaps | None = None

    def report(self) -> Report:
        network = self.network_info
        return Report(agent_id=self.agent_id, timestamp=self.timestamp, hostname=self.hostname,
                      host_info=self.host_info, docker_info=self.docker_info, processes_info=self.processes_info,
                      network_info=None if network is None else NetworkInfo(
                          connections=PendingConnections(network.connections), interfaces=network.interfaces,
                          netns=network.netns, sockets=network.sockets),
                      left_out=self.left_out, gaps=self.gaps)


_READ_BACK = msgspec.json.Decoder(_ReadBack)


def pack_report(report: Report, received_at: float, enrolled: bool, shape: bytes | None = None,
                address: str | None = None, signer: str | None = None,
                scope: str | None = None) -> tuple[bytes, PackedReport]:
    """The envelope, and the packed wire form in it."""
    packed = PackedReport.pack(_JSON.encode(report))
    frame = _Frame(FORMAT, packed.data, received_at, enrolled, shape or b"", address or "", signer or "",
                   scope or "")
    return _FRAME.encode(frame), packed


def unpacked_limit(max_body_size: int) -> int:
    """The longest wire JSON a report of a body up to ``max_body_size``
    (``server.max_body_size``: no replica accepts a larger one, also after
    gzip) is re-encoded to (``WIRE_EXPANSION``, ``RECORDS_BYTES``): a packed
    report that inflates beyond it is no report a replica published (a
    compression bomb), and is refused before it takes the memory."""
    return WIRE_EXPANSION * max_body_size + RECORDS_BYTES


DEFAULT_UNPACKED = unpacked_limit(Settings.defaults().server.max_body_size)
"""``unpacked_limit`` of the default ``server.max_body_size`` (88 MiB of 10 MiB)."""


def _rule(field_type: object) -> TextRule:
    """The rule the HTTP edge checks a text field of ``field_type`` by."""
    rule = CHECKS[field_type]
    assert isinstance(rule, TextRule)
    return rule


_AGENT_ID = _rule(Identifier)
_SCOPE = re.compile(f"[0-9a-f]{{{SCOPE_CHARS}}}")
"""What ``node_scope`` gives."""
_HOST_NAME = _rule(HostName)


def unpack_report(data: bytes, max_unpacked: int = DEFAULT_UNPACKED, *, defer_connections: bool = False,
                  now: float | None = None) -> Envelope:
    """The envelope in ``data``; with ``defer_connections``, its report's
    connections are decoded when first used (``PendingConnections``: most
    reports on the stream are merged without them), not checked here.
    ``now``: the reading replica's clock (``time.time()``), which the
    receive time may not be more than ``MAX_RECEIVED_AHEAD`` ahead of
    (None: not checked).

    Raises:
        BadEnvelope: for anything but an envelope of a ``READABLE`` format
            whose receive time is a finite time from ``EARLIEST_RECEIVED`` to
            ``LATEST_RECEIVED`` (``format``, the frame's only other number, is
            one of ``READABLE``), and not after ``now`` + ``MAX_RECEIVED_AHEAD``,
            holding a report that unpacks to at most
            ``max_unpacked`` bytes (``unpacked_limit``) of the report's wire
            JSON, with the fields the actors and views rely on as the HTTP
            edge takes them (``_check``).
    """
    try:
        frame = _READ_FRAME.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise BadEnvelope(f"not a report envelope: {exc}") from None
    if frame.format not in READABLE:
        raise BadEnvelope(f"not a report envelope of a format this version reads "
                          f"({', '.join(map(str, sorted(READABLE)))}): format {frame.format}")
    if not (math.isfinite(frame.received_at) and EARLIEST_RECEIVED <= frame.received_at < LATEST_RECEIVED):
        raise BadEnvelope(f"invalid received_at: {frame.received_at!r} (a time from {EARLIEST_RECEIVED:g} "
                          f"to {LATEST_RECEIVED:g} seconds since the epoch)")
    if now is not None and frame.received_at > now + MAX_RECEIVED_AHEAD:
        raise BadEnvelope(f"invalid received_at: {_moment(frame.received_at)} is {frame.received_at - now:.0f} s "
                          f"ahead of this replica's clock (at most {MAX_RECEIVED_AHEAD:.0f} s allowed, with the "
                          f"report's own time at most {MAX_AHEAD:.0f} s after it); check the clocks of the "
                          f"replicas, or who else publishes to the stream")
    packed = PackedReport(frame.report)
    try:
        wire = packed.unpack(max_unpacked)
        report = _READ_BACK.decode(wire).report() if defer_connections else _READ_REPORT.decode(wire)
    except BadPack as exc:
        raise BadEnvelope(f"not a report envelope: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadEnvelope(f"not a valid report: {exc}") from None
    _check(report, frame.received_at)
    # Any other length is no digest this version makes: found again on merging.
    shape = frame.shape if len(frame.shape) == SHAPE_BYTES else None
    signer = frame.signer if frame.enrolled and len(frame.signer) <= MAX_SIGNER else ""  # else no id an agent has
    # Any other text is no scope this version makes: the report's nodes are named as an unsigned one's.
    scope = frame.scope if frame.enrolled and _SCOPE.fullmatch(frame.scope) else ""
    return Envelope(report, frame.received_at, frame.enrolled, packed, shape, frame.address[:MAX_ADDRESS] or None,
                    signer or None, scope or None)


def _check(report: Report, received_at: float) -> None:
    """Raise ``BadEnvelope`` for a report whose agent id, host names or time
    the HTTP edge would have refused (its field rules, ``check_clock``): they
    name actors, nodes and versions of the views, which fail on one they
    cannot take. A few microseconds: no list of the report is walked."""
    host = report.host_info
    for path, value, rule in (("agent_id", report.agent_id, _AGENT_ID), ("hostname", report.hostname, _HOST_NAME),
                              ("host_info.hostname", "" if host is None else host.hostname, _HOST_NAME)):
        try:
            rule.check(value)
        except FieldError as exc:
            raise BadEnvelope(f"not a valid report: $.{path} {exc}") from None
    moment = report.timestamp
    if moment.utcoffset() is None:  # msgspec takes a time without a zone, as a naive datetime
        raise BadEnvelope(f"not a valid report: $.timestamp has no time zone: {moment.isoformat()}")
    if moment.timestamp() < 0:
        raise BadEnvelope(f"not a valid report: $.timestamp must not be before 1970-01-01T00:00:00Z, "
                          f"got {moment.isoformat()}")
    try:
        check_clock(report, received_at)  # after received_at + MAX_AHEAD; so never past the year 9000 either
    except InvalidDocument as exc:
        raise BadEnvelope(f"not a valid report: {exc}") from None


def _moment(seconds: float) -> str:
    """A receive time as RFC 3339 (within the bounds checked before)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
