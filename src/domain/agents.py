"""What the server knows about one agent: registration, liveness, latest report
and host-level metric history. Pure: every method takes ``now``."""

from __future__ import annotations

import zlib
from collections.abc import Collection, Mapping
from typing import Any

import attrs
import zstandard

from trioscope.domain.clocks import ReportTimes, newer, report_times
from trioscope.domain.timeseries import Point, SeriesGroup
from trioscope.domain.wall_clock import WallSteps
from trioscope.wire import AgentRegistration, FieldProblem, HostInfo, InvalidDocument, Report, rfc3339_seconds

MAX_AHEAD = 300.0
"""Seconds a report's timestamp may lie after its arrival (clock skew)."""


def check_clock(report: Report, received_at: float) -> None:
    """Refuse a report dated more than ``MAX_AHEAD`` after it arrived.

    The newest report of an agent (by its own timestamp) is the one that
    counts, so one report from a clock that ran ahead would otherwise hide the
    agent's real reports until that time comes (for ever, for a year 2099).

    Raises:
        InvalidDocument: naming ``$.timestamp``.
    """
    ahead = report.timestamp.timestamp() - received_at
    if ahead > MAX_AHEAD:
        raise InvalidDocument((FieldProblem(
            "$.timestamp", f"is {ahead:.0f} s ahead of the server's clock (at most {MAX_AHEAD:.0f} s allowed); "
                           "check the clock of the probe's host"),))


def io_rates(info: HostInfo, unreadable: Collection[str]) -> dict[str, float]:
    """The host's network and disk rates, but those the probe could not take
    (``Gaps.unreadable``: their source unreadable, or read once since): sent
    as 0, they are no value, not a sample of 0 (the host's node and every
    history alike)."""
    rates: dict[str, float] = {}
    if "network_io" not in unreadable:
        rates["network_rx_bytes_per_sec"] = info.network_rx_bytes_per_sec
        rates["network_tx_bytes_per_sec"] = info.network_tx_bytes_per_sec
    if "disk_io" not in unreadable:
        rates["disk_read_bytes_per_sec"] = info.disk_read_bytes_per_sec
        rates["disk_write_bytes_per_sec"] = info.disk_write_bytes_per_sec
    return rates


def host_metrics(report: Report) -> dict[str, float]:
    """The agent-level metrics one report contributes to its time series."""
    values: dict[str, float] = {}
    info = report.host_info
    if info is not None:
        if info.cpu_info is not None:
            values["cpu_usage"] = info.cpu_info.usage
        if info.memory_info is not None:
            values["memory_usage"] = info.memory_info.usage
            values["memory_used_mb"] = info.memory_info.used_mb
        if info.load_average is not None:
            values["load1"] = info.load_average.load1
        if info.disks:
            values["disk_usage"] = max(d.usage for d in info.disks)
        values.update(io_rates(info, report.gaps.unreadable if report.gaps is not None else ()))
    if report.docker_info is not None:
        values["containers"] = float(len(report.docker_info.containers))
    if report.processes_info is not None:
        # Those the probe found: a report cut to fit the server's limits says how many it left out.
        cut = report.left_out.processes if report.left_out is not None else 0
        values["processes"] = float(len(report.processes_info.processes) + cut)
    if report.network_info is not None:
        network = report.network_info
        values["connections"] = float(len(network.connections) if network.sockets is None else network.sockets)
    return values


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
"""How a Zstandard frame begins (a zlib stream begins with 0x78)."""


class BadPack(ValueError):
    """Packed data that does not unpack, or unpacks beyond its bound."""


@attrs.frozen
class PackedReport:
    """A report's JSON compressed with Zstandard (level 1): what an agent keeps
    of its newest report, and what the report bus carries. Decoded a typical
    report is ~300 small objects (~100 KB), as JSON ~58 KB, packed ~4.3 KB.

    Zstandard, not zlib: of the same 58 KB report, level 1 packs to 4.3 KB in
    ~54 us and unpacks in ~22 us, zlib's level 1 to 6.4 KB in ~139 us and 59 us
    (bench/RESULTS.md, session 36): every report is packed where it is received
    and, with a bus, unpacked by every other replica. Data packed with zlib by
    an earlier version (an envelope still on the stream) unpacks alike: the two
    are told apart by their first bytes. Packing a 10 MB report takes tens of
    ms, so the request handler packs large ones off the event loop."""

    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")

    @classmethod
    def pack(cls, raw: bytes) -> PackedReport:
        # A compressor per call: it is not safe to share between the event
        # loop and the worker thread that packs large reports (~3 us to make).
        return cls(zstandard.ZstdCompressor(level=1).compress(raw))

    def unpack(self, limit: int | None = None) -> bytes:
        """The JSON. Raises ``BadPack`` for data that is not a packed report, or
        that would unpack to more than ``limit`` bytes (refused before the
        memory is taken: packed data from the bus may be a bomb)."""
        data = self.data
        if data[:4] == ZSTD_MAGIC:
            try:
                size = zstandard.frame_content_size(data)
                if size == -1:  # not in its header (this project writes it): unpacked up to the bound
                    raw = zstandard.ZstdDecompressor().stream_reader(data).read(-1 if limit is None else limit + 1)
                elif limit is not None and size > limit:
                    raise _beyond(limit)
                else:
                    # Into a buffer of the declared size: a frame holding more fails (ZstdError).
                    raw = zstandard.ZstdDecompressor().decompress(data)
            except zstandard.ZstdError as exc:
                raise BadPack(f"not a packed report: {exc}") from None
            if limit is not None and len(raw) > limit:
                raise _beyond(limit)
            return raw
        try:
            inflate = zlib.decompressobj()
            raw = inflate.decompress(data, limit or 0)
        except zlib.error as exc:
            raise BadPack(f"not a packed report: {exc}") from None
        if inflate.unconsumed_tail:
            raise _beyond(limit)
        if not inflate.eof:
            raise BadPack("not a packed report: the zlib stream is truncated")
        return raw


def _beyond(limit: int | None) -> BadPack:
    return BadPack(f"the report inflates beyond {limit} bytes")


class AgentState:
    """One agent. ``last_seen`` is the newest of its registration, heartbeats and
    reports, by the server's clock (agents' clocks are not trusted for liveness)."""

    def __init__(self, agent_id: str, now: float, retention: float) -> None:
        """``now``: when the agent was first heard from (for an agent first
        known from a report replayed from the report stream, when that report
        was received, not when it was read back): the earliest ``last_seen``."""
        self.agent_id = agent_id
        self._begin(now, retention)

    def _begin(self, now: float, retention: float) -> None:
        """What is known of an agent first heard from ``now``."""
        self.hostname = ""
        self.metadata: dict[str, str] = {}
        self.first_seen = now
        self.registered_at: float | None = None
        self.registered_scope: str | None = None
        """The ``node_scope`` its registration was signed under (None: unsigned)."""
        self.last_heartbeat: float | None = None
        self.last_report_at: float | None = None
        self.reports_received = 0
        self._latest: PackedReport | None = None
        """The newest report as the agent sent it (kept packed, not decoded)."""
        self.latest_times: ReportTimes | None = None
        """The newest report's times on the server's clock (its ``seen`` says which is newest)."""
        self.latest_received_at: float | None = None
        """When the newest report (by ``latest_times``) was received."""
        self.latest_enrolled = False
        """Whether an enrolled agent signed the newest report."""
        self.latest_scope: str | None = None
        """The ``node_scope`` the newest report's node ids carry."""
        self.history = SeriesGroup(retention)
        self.wall = WallSteps()
        """The server's clock's steps, which ``clock_set`` is told of."""

    def register(self, registration: AgentRegistration, now: float, *, scope: str | None = None) -> None:
        """``scope``: the ``node_scope`` of the enrolled agent's tenant that signed it (None: unsigned)."""
        if self._said_under_another(scope):
            self._begin(now, self.history.retention)
        self.hostname = registration.hostname or self.hostname
        self.metadata = dict(registration.metadata)
        self.registered_at = now
        self.registered_scope = scope

    def _said_under_another(self, scope: str | None) -> bool:
        """Whether what is kept was said under another scope than ``scope``:
        the agent id is another tenant's now (or no enrolled probe's), and
        nothing the one before said is to be read by the new one, its
        registration (a deployment's hash, free text) and counts included."""
        if self._latest is not None:
            return scope != self.latest_scope
        return self.registered_at is not None and scope != self.registered_scope

    def heartbeat(self, now: float) -> None:
        self.last_heartbeat = now

    def clock_set(self, moved: float, *, reports_too: bool = True) -> None:
        """The server's clock was set by ``moved`` seconds (``WallSteps``):
        when the agent was heard from moves with it, so that the step is no
        silence (set forward: every agent stale, and one past
        ``storage.max_data_age`` forgotten with its registration) and hides
        none (set back: a silent agent healthy for as long). ``reports_too``
        False: its reports' receive times are the report stream's, stamped by
        the replicas on clocks they keep alike, and stay (``TopologyActor._follow_clock``)."""
        if self.registered_at is not None:
            self.registered_at += moved
        if self.last_heartbeat is not None:
            self.last_heartbeat += moved
        if reports_too:
            self.first_seen += moved
            if self.last_report_at is not None:
                self.last_report_at += moved

    def receive(self, report: Report, packed: PackedReport, now: float,
                metrics: Mapping[str, float] | None = None, *, enrolled: bool = False,
                scope: str | None = None, times: ReportTimes | None = None) -> None:
        """Keep the report (``packed``, its JSON as sent; ``enrolled``: an
        enrolled agent signed it; ``scope``: its nodes' ``node_scope``),
        received ``now``, if it is the newest, and record its metrics
        (``metrics``: its ``host_metrics``, if found already). ``times``: its
        times on the server's clock, by its agent's clock offset
        (``ClockOffsets.times``); None: its own time believed as it is."""
        if self._said_under_another(scope):
            self._begin(now, self.history.retention)
        self.reports_received += 1
        self.last_report_at = now
        if times is None:
            times = report_times(report, now, self.history.retention)
        newest = self.latest_times is None or newer(times.seen, now, self.latest_times.seen)
        if newest:
            self._latest = packed
            self.latest_times = times
            self.latest_received_at = now
            self.latest_enrolled = enrolled
            self.latest_scope = scope
            self.hostname = report.host_name
        self.history.record(times.metrics, host_metrics(report) if metrics is None else metrics,
                            fill_only=not newest)

    @property
    def latest_raw(self) -> bytes | None:
        """The newest report's JSON, as sent."""
        return self._latest.unpack() if self._latest is not None else None

    @property
    def last_seen(self) -> float:
        return max(t for t in (self.first_seen, self.registered_at, self.last_heartbeat, self.last_report_at)
                   if t is not None)

    def status(self, now: float, stale_threshold: float) -> str:
        """``healthy`` if heard from within ``stale_threshold``, else ``stale``."""
        return "healthy" if now - self.last_seen <= stale_threshold else "stale"

    def expired(self, now: float, max_age: float) -> bool:
        """Silent for longer than ``max_age``: to be forgotten."""
        return now - self.last_seen > max_age

    def points(self, since: float, until: float | None = None) -> list[Point]:
        return self.history.points(since, until)

    def describe(self, now: float, stale_threshold: float) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "hostname": self.hostname,
            "status": self.status(now, stale_threshold),
            "metadata": self.metadata,
            "registered_at": rfc3339_seconds(self.registered_at),
            "last_seen": rfc3339_seconds(self.last_seen),
            "last_heartbeat": rfc3339_seconds(self.last_heartbeat),
            "last_report_at": rfc3339_seconds(self.last_report_at),
            "reports_received": self.reports_received,
        }
