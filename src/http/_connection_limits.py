"""How many connections a serving process holds, and from whom: the counts
``GuardedTCPServer`` (``_tcp_server``) keeps as it accepts, writes to and ends
connections, and how refusals are said.

- at most ``limits.connections_per_address`` open connections per client
  source (an IPv6 address's /64; a trusted proxy's are not capped: it carries
  every client's connections), and all of them ``FILE_RESERVE`` below the
  process's open-file limit, so ``accept`` never fails for want of files
  (1,100 idle connections of one address at a 1,024 limit made new clients
  wait up to 1.8 s);
- at most ``limits.unsent_bytes_per_address`` of HTTP responses being written
  to one source's connections at once (one response written to several counts
  once): a client that asks for large answers and never reads them held a
  copy of each for ``--write-timeout``;
- at most ``limits.body_bytes_per_address`` of request bodies being received
  from one source (a trusted proxy's: no cap), and ``limits.body_bytes_total``
  from all, counted as their bytes arrive until each body is read
  (``_bodies``): a client that sends bodies of the largest size but their last
  byte held ~10 MiB per connection for ``--body-timeout`` (150 connections of
  one address: +1.5 GiB);
- refusals counted in /metrics and logged once, then at most once a minute
  (``Lull``), and so are the accepts that failed (``AcceptFailures``).

``ConnectionCounts`` is pure (the address and ``now`` are passed in), as is
``Lull`` (``trioscope.domain.rates``).
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

import attrs
from prometheus_client import Gauge

from trioscope.domain.rates import Lull

from ._forwarded import TrustedProxies, source_of
from ._services import services_of

log = logging.getLogger(__name__)


FILE_RESERVE = 128
"""Open files under the process's limit that connections never take: the
store's files, log files, the bus and database connections, and the
connection accepted only to be closed. Without them ``accept`` fails (EMFILE)
and new clients wait in the listen backlog for as long as it does."""
REFUSALS_LOGGED_EVERY = 60.0
"""Seconds between two log lines about connections refused for one reason
(or accepts that failed): each line counts those it stands for."""
PER_ADDRESS = "connections_per_address"
TOTAL = "connections_total"
UNSENT = "unsent_bytes_per_address"
BODY_PER_ADDRESS = "body_bytes_per_address"
BODY_TOTAL = "body_bytes_total"
"""Why a connection was refused or closed, or a request body refused: the
``reason`` label of ``app_requests_refused_total``."""
COUNTED_WRITE = 64 * 1024
"""Writes this large or larger count against ``limits.unsent_bytes_per_address``
(smaller ones: at most this for each of an address's connections)."""


def connection_room(open_files: int) -> int:
    """Connections a process that may have ``open_files`` files open holds at
    once: all but ``FILE_RESERVE`` (a quarter, of a limit that small)."""
    if open_files < 0 or open_files == resource.RLIM_INFINITY:
        return 2**62  # no limit: the system's own bounds (fs.nr_open, memory) apply
    return max(1, open_files - min(FILE_RESERVE, open_files // 4))


def shared_room_warning(per_address: int, open_files: int) -> str | None:
    """What to say at start when ``limits.connections_per_address`` is no cap:
    at or above the connections a process that may have ``open_files`` files
    open holds (``connection_room``), one address could take them all."""
    room = connection_room(open_files)
    if per_address < room:
        return None
    return (f"limits.connections_per_address ({per_address}) is at or above the {room} client connections the "
            f"open-file limit ({open_files}) allows: one client address could take every connection; lower "
            "--max-connections-per-address below it or raise the open-file limit (ulimit -n, LimitNOFILE)")


@attrs.frozen
class Held:
    """A connection ``ConnectionCounts.admit`` let in (or who a request's body
    counts as: ``ConnectionCounts.holder``)."""

    source: str
    """What its client counts as (``_forwarded.source_of``: an IPv6 address's /64)."""
    per_address: bool
    """Counted against its source's ``limits.connections_per_address``: not a trusted proxy's."""


@attrs.frozen
class Refused:
    """A connection ``ConnectionCounts.admit`` closes at once."""

    source: str
    reason: str
    """``PER_ADDRESS`` or ``TOTAL``."""


@attrs.frozen
class Write:
    """A write ``ConnectionCounts.start_write`` counted, until ``end_write``."""

    source: str
    key: int
    """The ``id`` of the bytes written (alive while they are written): the
    same bytes written to several connections of one source count once."""


@attrs.define
class BodyRead:
    """A request body being received, counted (``ConnectionCounts.charge_body``)
    as its bytes arrive, until ``end_body``."""

    held: Held
    """Whose it is: a request's client counts as its connection would (``ConnectionCounts.holder``)."""
    size: int = 0
    """Bytes counted so far."""


def _uncount(counter: collections.Counter[str], key: str, count: int) -> None:
    """``count`` less for ``key``, whose entry goes at zero (a source with none has none)."""
    left = counter[key] - count
    if left > 0:
        counter[key] = left
    else:
        del counter[key]


@attrs.define
class ConnectionCounts:
    """The connections one serving process holds open, counted as
    ``GuardedTCPServer`` accepts and ends them: by client source, held to
    ``per_address`` each (a trusted proxy's to none: it carries every client's
    connections, whose own addresses are known only from the requests), and
    to ``total`` together. Pure: each connection calls ``admit`` as it starts
    and ``release`` with what it got when it ends."""

    per_address: int
    """``limits.connections_per_address``."""
    total: int
    """``connection_room`` of the open-file limit."""
    proxies: TrustedProxies = attrs.field(factory=TrustedProxies)
    open: int = 0
    """Connections held now."""
    by_source: collections.Counter[str] = attrs.field(factory=collections.Counter)
    """Connections held now by source, trusted proxies' left out; a source
    with none has no entry."""
    unsent_per_address: int = 2**62
    """``limits.unsent_bytes_per_address``."""
    unsent: collections.Counter[str] = attrs.field(factory=collections.Counter)
    """Bytes being written now by source (each distinct bytes once); a source with none has no entry."""
    _writes: dict[str, dict[int, list[int]]] = attrs.field(factory=dict, init=False)
    """By source, the bytes being written: their id -> [writes of them, their size]."""
    body_per_address: int = 2**62
    """``limits.body_bytes_per_address``."""
    body_total: int = 2**62
    """``limits.body_bytes_total``."""
    receiving: collections.Counter[str] = attrs.field(factory=collections.Counter)
    """Bytes of request bodies being received now by source, trusted proxies'
    left out; a source with none has no entry."""
    receiving_total: int = 0
    """Bytes of request bodies being received now, trusted proxies' included."""

    def holder(self, peer: str) -> Held:
        """What a connection from ``peer`` (the address it comes from) counts as; nothing counted."""
        return Held(source_of(peer), not (self.proxies.networks and self._trusted(peer)))

    def admit(self, peer: str) -> Held | Refused:
        """Count a connection from ``peer``, or say why it is refused (nothing counted then)."""
        held = self.holder(peer)
        if held.per_address and self.by_source[held.source] >= self.per_address:
            return Refused(held.source, PER_ADDRESS)
        if self.open >= self.total:
            return Refused(held.source, TOTAL)
        self.open += 1
        if held.per_address:
            self.by_source[held.source] += 1
        return held

    def release(self, held: Held) -> None:
        """A connection ``admit`` let in is over."""
        self.open -= 1
        if held.per_address:
            _uncount(self.by_source, held.source, 1)

    def charge_body(self, body: BodyRead, size: int, ahead: int = 0) -> str | None:
        """Count ``size`` more bytes of ``body`` received; or, counting
        nothing, why they (and ``ahead``, bytes its request says are still to
        come) would take its source past ``body_per_address`` (``BODY_PER_ADDRESS``)
        or every source past ``body_total`` (``BODY_TOTAL``)."""
        wanted = size + ahead
        if body.held.per_address and self.receiving[body.held.source] + wanted > self.body_per_address:
            return BODY_PER_ADDRESS
        if self.receiving_total + wanted > self.body_total:
            return BODY_TOTAL
        if size:
            body.size += size
            self.receiving_total += size
            if body.held.per_address:
                self.receiving[body.held.source] += size
        return None

    def end_body(self, body: BodyRead) -> None:
        """``body`` is received (or given up): what it counted goes back."""
        self.receiving_total -= body.size
        if body.held.per_address and body.size:
            _uncount(self.receiving, body.held.source, body.size)
        body.size = 0

    def start_write(self, held: Held, key: int, size: int) -> Write | None:
        """Count ``size`` bytes (the object whose id is ``key``) being written
        to a connection of ``held``'s source until ``end_write``; None, and
        nothing counted, when they would take the source past
        ``unsent_per_address`` while others are being written (so a single
        response always goes, however large). Bytes already being written to
        another of its connections are counted once."""
        writes = self._writes.get(held.source)
        entry = writes.get(key) if writes is not None else None
        if entry is None:
            pending = self.unsent[held.source]
            if pending and pending + size > self.unsent_per_address:
                return None
            if writes is None:
                writes = self._writes[held.source] = {}
            entry = writes[key] = [0, size]
            self.unsent[held.source] = pending + size
        entry[0] += 1
        return Write(held.source, key)

    def end_write(self, write: Write) -> None:
        """A write ``start_write`` counted is over (written, or given up)."""
        writes = self._writes[write.source]
        entry = writes[write.key]
        entry[0] -= 1
        if entry[0]:
            return
        del writes[write.key]
        _uncount(self.unsent, write.source, entry[1])
        if write.source not in self.unsent:
            del self._writes[write.source]

    def _trusted(self, peer: str) -> bool:
        try:
            return self.proxies.trusts(ipaddress.ip_address(peer))
        except ValueError:
            return False

    def describe(self, refused: Refused) -> str:
        """What a refusal was, for the log."""
        if refused.reason == PER_ADDRESS:
            return (f"from {refused.source}, which holds {self.per_address} open already "
                    "(limits.connections_per_address)")
        return (f"from {refused.source}: the server holds {self.total} connections, as many as its "
                f"open-file limit allows less {FILE_RESERVE} kept for its own files")


class Admission:
    """What ``GuardedTCPServer`` needs of the app it serves to count its
    connections: the counts, the refusals' log lines and /metrics counter.
    One per app, made with its first connection (after ``serve`` raised the
    open-file limit, which ``ConnectionCounts.total`` is made from)."""

    def __init__(self, counts: ConnectionCounts, refused: Callable[[str], None]) -> None:
        self.counts = counts
        self._count_refusal = refused
        self._lulls = {reason: Lull(REFUSALS_LOGGED_EVERY) for reason in (PER_ADDRESS, TOTAL, UNSENT, BODY_PER_ADDRESS, BODY_TOTAL)}
        self._write_timeouts = Lull(REFUSALS_LOGGED_EVERY)

    def write_timed_out(self, source: str, seconds: float) -> None:
        """A connection closed as its client read nothing for ``seconds``
        (``server.write_timeout``): said once a ``REFUSALS_LOGGED_EVERY``, as
        the refusals are (a client can make as many)."""
        unlogged = self._write_timeouts.due(time.monotonic())
        if unlogged is not None:
            log.info("closed a connection from %s whose client read nothing for %g s (server.write_timeout; %s)",
                     source, seconds, f"{unlogged} more such since the last such line" if unlogged else
                     f"such lines are logged at most once every {REFUSALS_LOGGED_EVERY:g} s",
                     extra={"event": "write_timeout", "address": source})

    def refused(self, refusal: Refused) -> None:
        """A connection closed as accepted: counted, and said (``Lull``)."""
        self._said(refusal.reason, f"refused a connection {self.counts.describe(refusal)}; closed as accepted")

    def unsent_refused(self, source: str, size: int) -> None:
        """A write ``ConnectionCounts.start_write`` refused: its connection is closed."""
        mib = 1024**2
        self._said(UNSENT, f"closed a connection from {source} instead of writing {size / mib:.1f} MiB of a "
                   f"response to it: its connections are being written {self.counts.unsent[source] / mib:.1f} MiB "
                   f"already (limits.unsent_bytes_per_address: {self.counts.unsent_per_address / mib:g} MiB)")

    def body_refused(self, body: BodyRead, reason: str) -> str:
        """A request body ``ConnectionCounts.charge_body`` refused (its request
        gets 503): counted, and said (``Lull``). Returns what the client is told."""
        mib = 1024**2
        counts = self.counts
        if reason == BODY_PER_ADDRESS:
            told = (f"the server is receiving {counts.receiving[body.held.source] / mib:.1f} MiB of request bodies "
                    f"from this address already (limits.body_bytes_per_address: {counts.body_per_address / mib:g} MiB)")
        else:
            told = (f"the server is receiving {counts.receiving_total / mib:.1f} MiB of request bodies already "
                    f"(limits.body_bytes_total: {counts.body_total / mib:g} MiB)")
        self._said(reason, f"refused a request body from {body.held.source}: {told}")
        return told

    def _said(self, reason: str, what: str) -> None:
        self._count_refusal(reason)
        unlogged = self._lulls[reason].due(time.monotonic())
        if unlogged is not None:
            log.warning("%s (%s)", what, f"{unlogged} more such since the last such line" if unlogged else
                        f"such lines are logged at most once every {REFUSALS_LOGGED_EVERY:g} s",
                        extra={"event": "connection_refused", "reason": reason})


_ADMISSION = "trioscope.connection_admission"


def admission_of(app: Any) -> Admission | None:
    """The admission of the application Hypercorn serves (its ``ASGIWrapper``
    holds it), made with its first connection; None for an application
    without trioscope's services (a bare Hypercorn)."""
    return admission_of_app(getattr(app, "app", None))


def admission_of_app(quart: Any) -> Admission | None:
    """``admission_of`` the Quart application itself (a request's ``current_app``):
    made here if no connection made it (the test client connects none)."""
    extensions = getattr(quart, "extensions", None)
    if not isinstance(extensions, dict):
        return None
    admission: Admission | None = extensions.get(_ADMISSION)
    if admission is None:
        try:
            s = services_of(quart)
        except KeyError:
            return None
        open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        limits = s.settings.limits
        counts = ConnectionCounts(per_address=limits.connections_per_address,
                                  total=connection_room(open_files), proxies=s.proxies,
                                  unsent_per_address=limits.unsent_bytes_per_address,
                                  body_per_address=limits.body_bytes_per_address,
                                  body_total=limits.body_bytes_total)
        admission = extensions[_ADMISSION] = Admission(counts, s.metrics.refused)
        Gauge("app_request_body_bytes", "Bytes of request bodies being received now (limits.body_bytes_total)",
              registry=s.metrics.registry).set_function(lambda: counts.receiving_total)
    return admission


class AcceptFailures(logging.Filter):
    """``trio.serve_listeners`` logs every ``accept`` that failed for want of
    resources (EMFILE: out of open files) at ERROR with its traceback, and
    tries again every 100 ms: ten tracebacks a second for as long as it lasts
    (374 in 30 s). This lets one line through every ``interval`` seconds,
    saying what happened, what it means and how many it stands for."""

    def __init__(self, interval: float = REFUSALS_LOGGED_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._lull = Lull(interval)
        self._clock = clock

    def filter(self, record: logging.LogRecord) -> bool:
        unlogged = self._lull.due(self._clock())
        if unlogged is None:
            return False
        name, strerror = (record.args[:2] if isinstance(record.args, tuple) and len(record.args) >= 2
                          else ("?", record.getMessage()))
        record.msg = ("accepting a connection failed: %s (%s); new connections wait in the listen backlog "
                      "meanwhile, and accept is tried again every 100 ms (%s)")
        record.args = (name, strerror, f"{unlogged} more such failures since the last such line" if unlogged
                       else f"such failures are logged at most once every {self._lull.interval:g} s")
        record.exc_info = record.exc_text = None
        return True
