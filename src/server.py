"""``trioscope serve``: the supervision tree and the HTTP front end in one
``trio.run``, and a graceful shutdown bounded by ``server.shutdown_timeout``.

The same function runs each serving process of ``--workers N``
(``trioscope.workers``), on the listening sockets its parent bound.

Shutdown order on SIGINT/SIGTERM: stop accepting connections and let in-flight
requests finish (Hypercorn's graceful phase, half the budget), then stop the
actors in reverse start order, each draining its mailbox. A second signal, or the
budget running out, cancels whatever is left, what is shielded from cancellation
included: writes to clients (``trioscope.http.client_writes``) end with the
graceful phase, and the actors' shielded waits (a commit, in a thread the
database holds up) with the budget (the system's ``Cutoff``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import resource
import signal
import socket
import sqlite3
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlsplit

import attrs
import hypercorn
import trio
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app
from quart_trio import QuartTrio

from trioscope.allocator import GLIBC_SERVED, Allocator, Glibc, Jemalloc, Trimmer, return_freed_memory
from trioscope.allocator import AllocatorUnavailable
from trioscope.allocator import current as current_allocator
from trioscope.allocator import plan_here as plan_allocator
import trioscope.bus
from trioscope.config import Settings, format_duration
from trioscope.exit_code import ExitCode as ExitCode
from trioscope.http import (
    MAX_WEBSOCKET_MESSAGE, client_writes, create_app, endpoint_lines, install_bounded_websockets,
    install_guarded_tcp_server, stop_live_updates,
)
from trioscope.http._connection_limits import shared_room_warning  # not of the edge's API: said at start only
from trioscope.http._hosts import loopback  # likewise
from trioscope.http._memory_budget import typical_host_warning  # likewise
from trioscope.runtime import Cutoff, RestartIntensityExceeded, open_actor_system
from trioscope.listening import close_sockets, is_address, listen
from trioscope.local_probe import probe_url, run_local_probe
from trioscope.store import (
    StoreOpen, StoreReader, Unavailable, describe_database, disk_note, lock_sqlite, open_to_others, open_writer,
    sqlite_path, store_lost, token_secret,
)
from trioscope.system import database_path, resume_open_queues, supervision_tree

if TYPE_CHECKING:
    from trioscope.bus import ReportBus

log = logging.getLogger(__name__)


TLS_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a new connection has to finish its TLS handshake."""


@attrs.frozen(kw_only=True)
class ServingWorker:
    """This process is worker ``index`` of ``--workers``, started by
    ``trioscope.workers``: it serves on the listening sockets its parent bound,
    and stops (gracefully) when ``parent_fd``, a pipe only the parent writes to,
    reaches end of file: the parent is gone, however it went."""

    index: int
    listen_fds: tuple[int, ...]
    """The listening sockets the parent bound (one per address of ``server.host``)."""
    parent_fd: int
    secure: bool = False
    """The socket is to speak TLS (Hypercorn wraps it, with the configured certificate)."""
    hold: bool = False
    """Another worker serves already (this one restarts after a crash, or
    starts late): with a bus, take no connection from the shared socket until
    the report stream is read to its end (``BusProgress.caught_up``), so that
    each one meets a worker that is ready, rather than 503 ``catching_up`` from
    this one, or until the parent writes anything on ``parent_fd``
    (``SERVE_NOW``): no other worker serves any more."""


def bind_address(settings: Settings) -> str:
    host, port = settings.server.host, settings.server.port
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hypercorn_config(settings: Settings) -> hypercorn.Config:
    config = hypercorn.Config()
    config.bind = [bind_address(settings)]
    config.backlog = settings.server.backlog
    config.graceful_timeout = settings.server.shutdown_timeout / 2
    # Hypercorn closes a keep-alive connection after 1000 requests by default,
    # which makes every busy agent reconnect; there is no reason to.
    config.keep_alive_max_requests = 1_000_000
    config.accesslog = None
    # The largest message any socket takes (an agent's result on /ws/agent);
    # each socket answers or closes beyond its own, smaller limit. Hypercorn
    # alone would close but read on past it (see trioscope.http._websocket_stream).
    config.websocket_max_message_size = MAX_WEBSOCKET_MESSAGE
    # Read by each connection (trioscope.http._tcp_server): Hypercorn has no write timeout of its own.
    config.trioscope_write_timeout = settings.server.write_timeout  # type: ignore[attr-defined]  # our own setting on its config
    config.errorlog = logging.getLogger("hypercorn.error")
    if settings.server.tls:
        # With both set Hypercorn binds `bind` as TLS sockets (`secure_sockets`).
        config.certfile = settings.server.tls_cert
        config.keyfile = settings.server.tls_key
        # HTTP/1.1 only, as on plain connections: the edge's guards (bounded
        # WebSocket streams, the guarded TCP server, per-connection limits)
        # are built and tested on h11; HTTP/2's streams would bypass some.
        config.alpn_protocols = ["http/1.1"]
        # Hypercorn waits 60 s for a handshake: a connection that never starts
        # one would hold a socket that long (plain connections: 5 s for a request).
        config.ssl_handshake_timeout = TLS_HANDSHAKE_TIMEOUT
    return config


def check_tls(config: hypercorn.Config) -> str | None:
    """Why the certificate and key cannot be used (unreadable, not PEM, not a
    pair), or None: found at start rather than at the first handshake."""
    try:
        config.create_ssl_context()
    except (OSError, ssl.SSLError) as exc:
        return f"{type(exc).__name__}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
    return None


def tls_unusable(settings: Settings, config: hypercorn.Config) -> bool:
    """With TLS configured, whether its certificate and key cannot be used
    (``check_tls``), after logging why: the process then exits 1."""
    if not settings.server.tls or (problem := check_tls(config)) is None:
        return False
    log.error("cannot use the TLS certificate %s and key %s: %s", settings.server.tls_cert,
              settings.server.tls_key, problem)
    return True


async def _serve_http(app: QuartTrio, config: hypercorn.Config, sockets: Sockets, stop: trio.Event,
                      task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    # hypercorn.trio.serve binds its own sockets; its worker accepts ours, so a
    # port in use is found before anything else has started.
    install_bounded_websockets()  # Hypercorn's classes with their holes closed (see their modules)
    install_guarded_tcp_server()
    await worker_serve(wrap_app(app, config.wsgi_max_body_size, None), config,
                       sockets=sockets, shutdown_trigger=stop.wait, task_status=task_status)


def inherited(worker: ServingWorker) -> Sockets:
    """The listening sockets the parent bound, passed down as ``worker.listen_fds``."""
    socks = [socket.socket(fileno=fd) for fd in worker.listen_fds]
    for sock in socks:
        sock.setblocking(False)  # the parent's are already; this says what trio needs
    if worker.secure:
        return Sockets(secure_sockets=socks, insecure_sockets=[], quic_sockets=[])
    return Sockets(secure_sockets=[], insecure_sockets=socks, quic_sockets=[])


SERVE_NOW = b"!"
"""What the parent of ``--workers`` writes on a held worker's pipe
(``ServingWorker.hold``) when no other worker serves: take connections now,
answering 503 ``catching_up`` until the stream is read. Any byte means it."""
HOLDING = "Reading the report stream before taking connections"
"""The start of the line a held worker prints (before its banner) while it
reads the stream: its parent waits for the banner without ``START_TIMEOUT``."""


async def _watch_parent(parent_fd: int, stop: trio.Event, serve_now: trio.Event) -> None:
    """Set ``stop`` at end of file on the parent's pipe (the parent is gone),
    ``serve_now`` when the parent writes anything on it (``SERVE_NOW``)."""
    async with trio.lowlevel.FdStream(os.dup(parent_fd)) as pipe:
        while await pipe.receive_some():
            serve_now.set()
    if not stop.is_set():
        log.warning("the parent process is gone: shutting down")
        stop.set()


@attrs.define
class _SecondSignal:
    """The signal that came after the first one, asking to stop at once (None: none came)."""

    signum: signal.Signals | None = None

    def exit_code(self) -> ExitCode:
        """128 + the signal's number, as shells report a process a signal ended."""
        assert self.signum is not None
        return ExitCode.INTERRUPTED if self.signum is signal.SIGINT else ExitCode.TERMINATED


async def _watch_signals(signals: AsyncIterator[int], stop: trio.Event, everything: trio.CancelScope,
                         budget: float, second: _SecondSignal, shielded: Sequence[Cutoff]) -> None:
    """The first signal starts the shutdown, within ``budget``: ``everything``
    is cancelled at its end, and the waits of ``shielded`` (which that
    cancellation does not reach) end then too. A second signal ends both at once."""
    async for signum in signals:
        name = signal.Signals(signum).name
        if not stop.is_set():
            log.info("received %s: shutting down (at most %s)", name, format_duration(budget))
            stop.set()
            everything.deadline = trio.current_time() + budget
            for cutoff in shielded:
                cutoff.cut(everything.deadline)
        elif second.signum is None:
            # Said once it stopped (``serve``): one line, and only if it was cut short.
            second.signum = signal.Signals(signum)
            everything.cancel(reason=f"a second {name}")
            for cutoff in shielded:
                cutoff.cut(trio.current_time())


def _data_dir_flag(settings: Settings) -> str:
    """The token CLI must find the same secret: name the data dir unless it is the default."""
    default = Settings.defaults().storage.data_dir
    return "" if settings.storage.data_dir == default else f" --data-dir {settings.storage.data_dir}"


def every_interface(host: str) -> str | None:
    """How the banner names a wildcard ``host`` (None: it is none): ``0.0.0.0``
    is every IPv4 interface only, and an operator on an IPv6 network must
    learn ``--host ::`` from somewhere."""
    if host.strip("[]") in ("::", "0:0:0:0:0:0:0:0"):
        return "every interface"
    if host == "0.0.0.0":
        return "every IPv4 interface"
    return None


def open_reads_warning(settings: Settings) -> str | None:
    """What to say when anyone on the network can read the topology: reads open
    (the seed's default) on an address that is not loopback only."""
    host = settings.server.host
    if settings.auth.protect_reads or loopback(host):
        return None
    where = every_interface(host) or host
    # Protecting reads hides the nodes of unsigned probes (the local probe's among them):
    # said here, where it is recommended, so that an empty UI afterwards is no surprise.
    return (f"WARNING: listening on {where} with open reads: anyone who can reach port {settings.server.port} "
            "sees the topology, node details and /metrics. Protect them with --protect-reads true "
            "(auth.protect_reads; each user then sees the probes enrolled in their tenant's deployments, and "
            "unsigned probes' nodes, the local probe's included, only with --show-unassigned-agents true), "
            "or listen on this machine only with --host 127.0.0.1.")


def any_name_warning(settings: Settings) -> str | None:
    """What to say when the server answers whatever name it is asked under:
    listening beyond this machine with no ``server.allowed_hosts`` (see
    ``trioscope.http._hosts``), where a web page an operator opens can point
    its own name at the server (DNS rebinding) and read it from their browser."""
    if loopback(settings.server.host) or settings.server.allowed_hosts:
        return None
    return ("the server answers requests under any host name (server.allowed_hosts is empty): a web page an "
            "operator opens could point its own name at this server (DNS rebinding) and use it from their browser; "
            "list the names it is known by with --allowed-hosts (IP addresses and localhost are always answered)")


BANNER_END = "Press Ctrl-C to stop."
"""How the banner's last line ends, with a bus or without (what a worker pool's
parent reads up to before it prints the banner once)."""


def banner(settings: Settings, app: QuartTrio, binds: list[str]) -> str:
    s = settings
    scheme = "https" if settings.server.tls else "http"
    base = binds[0] if binds else f"{scheme}://{bind_address(settings)}"
    ws = base.replace("http", "ws", 1)  # http -> ws, https -> wss
    warning = open_reads_warning(settings)
    lines = [
        f"trioscope listening on {base}",
        # A name is bound to each of its addresses (trioscope.listening): each is said.
        *(f"and listening on {more}" for more in binds[1:]),
        *([warning] if warning else []),
        "",
        "=== Configuration ===",
        f"Host:                  {s.server.host}"
        + (f"  ({every}{'; --host :: for IPv6 too' if 'IPv4' in every else ''})"
           if (every := every_interface(s.server.host)) else _addresses_of_name(s.server.host, binds)),
        f"Reads:                 {'need a user token (auth.protect_reads)' if s.auth.protect_reads else 'open'}",
        f"Port:                  {_bound_port(binds) or s.server.port}",
        *([f"Workers:               {s.server.workers} processes on this port"] if s.server.workers > 1 else []),
        f"Max Data Age:          {format_duration(s.storage.max_data_age)}",
        f"Cleanup Interval:      {format_duration(s.storage.cleanup_interval)}",
        f"Stale Node Threshold:  {format_duration(s.agents.stale_threshold)}",
        f"Shutdown Timeout:      {format_duration(s.server.shutdown_timeout)}",
        f"Allocator:             {allocator_line(s.server.allocator)}",
        f"Config File:           {s.config_file or '(none)'}",
        "",
        "=== Endpoints ===",
        f"REST API:              {base}/api/v1",
        f"WebSocket:             {ws}/api/v1/ws",
        f"Health Check:          {base}/health",
        f"Readiness Check:       {base}/health/ready",
        f"Web UI:                {base}/  (sign in with a token from: trioscope token create --user YOU "
        f"--tenant TEAM --role ADMIN{_data_dir_flag(settings)})",
        "",
        "=== Available Endpoints ===",
        *endpoint_lines(app),
        "",
        ("Ready." if not settings.bus.url else
         "Serving; ready (/health/ready) once the report stream is read to its end.") + " " + BANNER_END,
    ]
    return "\n".join(lines)


def _addresses_of_name(host: str, binds: list[str]) -> str:
    """The addresses a ``host`` that is a name was bound to, as the banner says them (``  (127.0.0.1 and ::1)``)."""
    if is_address(host) or not binds:
        return ""
    addresses = [str(urlsplit(url).hostname) for url in binds]
    return f"  ({', '.join(addresses[:-1])} and {addresses[-1]})" if len(addresses) > 1 else f"  ({addresses[0]})"


def _bound_port(binds: list[str]) -> int | None:
    """The port the server listens on (``server.port`` 0 asks the kernel for one)."""
    return urlsplit(binds[0]).port if binds else None


def allocator_line(requested: str) -> str:
    """Which allocator serves this process's objects and why (``trioscope.allocator``):
    said with the banner, once the server started, so a start that fails is one line."""
    running = current_allocator()
    try:
        reason = plan_allocator(requested).reason
    except AllocatorUnavailable as exc:  # asked by name, gone since the start: says so
        reason = str(exc)
    return f"{running.allocator.value}{f' from {running.library}' if running.library else ''} ({reason})"


def _trimmer() -> Trimmer | None:
    """What gives this process's freed memory back (trioscope.allocator):
    glibc's heaps under pymalloc, jemalloc's dirty pages under jemalloc;
    mimalloc returns its own."""
    running = current_allocator().allocator
    if running in GLIBC_SERVED:
        return Glibc.load()
    if running is Allocator.JEMALLOC:
        return Jemalloc.load()
    return None


OPEN_FILES_WITHOUT_LIMIT = 1 << 20
"""The soft limit of open files asked for when the hard one is unlimited
(Linux's ``fs.nr_open`` default: a soft limit above it is refused)."""


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's soft limit of open files to its hard limit: each
    connection takes one, and many systems start services at a soft 1,024
    under a hard limit far higher, where a few idle clients used every one up
    (``accept`` failed, new clients waited). Connections are then held below
    it (``trioscope.http._connection_limits.ConnectionCounts``).

    Returns:
        The soft limit before and after (the same when it could not be raised).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WITHOUT_LIMIT if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, wanted


def open_files_line(before: int, after: int, hard: int) -> str:
    """What ``raise_open_files_limit`` did (``before``, ``after``) under the hard limit ``hard``, said at start."""
    if after == resource.RLIM_INFINITY:
        return "open files: no limit"
    if after != before:
        how = f"raised from {before} to " + ("the hard limit" if after == hard else "this, the hard limit being unlimited")
    elif after == hard:
        how = "the hard limit"
    else:
        how = f"the soft limit; the hard one, {'unlimited' if hard == resource.RLIM_INFINITY else hard}, was refused"
    return f"open files: at most {after} ({how}); client connections are held below it"


SWITCH_INTERVAL = 0.0005
"""Seconds a thread holding the interpreter keeps it while another waits
(CPython's default: 5 ms). Work handed to worker threads (bodies over a size,
metrics reads and writes, compression, nats-py's loop) holds the interpreter
as it runs, and the event loop waited up to the whole interval at each wake
of its own: under one agent's 10,000-point metrics writes, read and stored in
threads, ``/health`` took p50 24.5 ms; with 0.5 ms, 6.5 (idle: 3.3). Report
ingest and the bus's replicas measured the same either way (bench/RESULTS.md,
session 51)."""


def tune_interpreter() -> None:
    """The garbage collector's thresholds (below) and ``SWITCH_INTERVAL``.

    The server allocates hundreds of small objects per report and keeps
    hundreds of thousands alive (metric rings, indexes), almost none in cycles.
    With CPython's default thresholds the cyclic collector then took ~20% of the
    CPU under report load (measured: 1.7 s of 9 s); collecting the young
    generation every 50,000 allocations instead of 700 made it ~0.5%. The
    topology's nodes and edges, the most numerous, are not tracked at all
    (``Node``): each collection holds the event loop for what it walks.

    What survives the young generation waits in the middle one until that is
    collected: with 20 young collections of 50,000 between two (1,000,000
    allocations), a burst of reports from new hosts (their partitions, history
    and actors all survive) made middle collections of 150-180 ms, each one
    pause of the event loop. Young collections of 20,000 and a middle one every
    5 of them walk the same objects in pauses of at most ~40 and ~70 ms
    (bench/RESULTS.md, session 39); a full collection still comes after as
    many allocations as before (20,000 x 5 x 1,000 = 50,000 x 20 x 100)."""
    gc.freeze()  # what exists at start-up lives forever: never scan it again
    gc.set_threshold(20_000, 5, 1000)
    sys.setswitchinterval(SWITCH_INTERVAL)


@attrs.frozen
class _OpenStore:
    reader: StoreReader
    lock: int | None
    """The descriptor holding an SQLite store's lock (``lock_sqlite``), closed at exit."""

    def unlock(self) -> None:
        """Let another server use the SQLite store (the process ends, or never serves)."""
        if self.lock is not None:
            os.close(self.lock)


def _open_data_dir(settings: Settings) -> _OpenStore | None:
    """The database (its schema applied, an SQLite one locked to this process)
    and the token secret, checked before anything starts: a corrupt,
    unwritable, unreachable, misplaced or busy store is one log line naming
    it, not a traceback from inside the actor tree. None: it was logged."""
    database = database_path(settings)
    where = (f"the data directory {settings.storage.data_dir}" if not settings.store.database
             else f"the database {describe_database(database)}")
    if settings.storage.data_dir.parts[:1] == ("~",) and not (settings.store.database and settings.auth.secret):
        # The default's ~ with no home directory to fill in (a container's user: HOME unset, none in
        # the password file): the store and the secret were made in a directory named "~" here.
        log.error("cannot use the data directory %s: this user (uid %d) has no home directory (HOME is unset); "
                  "give --data-dir (TRIOSCOPE_STORAGE_DATA_DIR), on a volume that outlives the server",
                  settings.storage.data_dir, os.getuid())
        return None
    try:
        # A secret there already is checked before the store is made: a start it
        # refused left a new, migrated store behind. One to generate is made below.
        token_secret(settings.auth.secret, settings.storage.data_dir, create=False)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.error("cannot use the data directory %s: %s: %s", settings.storage.data_dir, type(exc).__name__, exc)
        return None
    path = sqlite_path(database)
    if path is not None and (lost := store_lost(settings.storage.data_dir, path)) is not None:
        # Before the lock, which would create the file: a refused start changes nothing.
        log.error("cannot use %s: %s", where, lost)
        return None
    with contextlib.ExitStack() as unless_served:  # the lock is let go unless the store is handed on
        try:
            lock = None if path is None else lock_sqlite(path)  # first: a server refused changes nothing
            if lock is not None:
                unless_served.callback(os.close, lock)
            open_writer(database).close()  # creates the file or tables and schema if new
        except BlockingIOError as exc:  # (an OSError: first)
            log.error("cannot use %s: another trioscope server uses it%s (one process per SQLite store: stop that "
                      "one, or give this one its own --data-dir)", where,
                      f" ({exc.strerror})" if isinstance(exc, StoreOpen) else "")
            return None
        except (Unavailable, sqlite3.Error, OSError, ValueError) as exc:
            log.error("cannot use %s: %s: %s%s", where, type(exc).__name__, exc, disk_note(database))
            return None
        try:
            token_secret(settings.auth.secret, settings.storage.data_dir)
            opened = _OpenStore(StoreReader(database), lock)
        except (Unavailable, sqlite3.Error, OSError, ValueError) as exc:
            log.error("cannot use the data directory %s: %s: %s", settings.storage.data_dir, type(exc).__name__,
                      exc)
            return None
        if path is not None and (exposed := open_to_others(path)) is not None:
            log.warning("other users of this machine may read the store: %s; it holds the audit log, every "
                        "command's parameters and results and the agents' token hashes (chmod 700 %s; chmod 600 "
                        "%s*)", exposed, path.parent, path, extra={"event": "store_open_to_others"})
        unless_served.pop_all()
        return opened


async def _hold_connections(bus: ReportBus, serve_now: trio.Event, stop: trio.Event, out: TextIO) -> bool:
    """For a held worker (``ServingWorker.hold``): wait, taking no connection,
    until the report stream is read to its end or the parent says to serve
    (``SERVE_NOW``); whether to serve now (False: asked to stop meanwhile).
    Unbounded in time on purpose: another worker serves meanwhile, and the
    parent says ``SERVE_NOW`` as soon as none does (a time bound would leave
    the port unserved that long, or flap again on a longer replay)."""
    print(f"{HOLDING} (another worker serves meanwhile).", file=out, flush=True)
    log.info("another worker serves: taking connections once the report stream is read to its end",
             extra={"event": "worker_held"})
    async with trio.open_nursery() as waiting:
        async def first(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            waiting.cancel_scope.cancel(reason="held no longer")

        for wait in (bus.progress.wait_caught_up, serve_now.wait, stop.wait):
            waiting.start_soon(first, wait)
    if stop.is_set():
        return False
    if not bus.progress.caught_up:
        log.warning("no other worker serves any more: taking connections before the report stream is read "
                    "to its end", extra={"event": "worker_held_released"})
    return True


async def _report_bus(settings: Settings, *, task_status: trio.TaskStatus[ReportBus | None]) -> None:
    """The report bus (None without ``bus.url``) for as long as this task runs:
    connected in the background, so that a replica starts (not ready) while the
    bus is away."""
    if not settings.bus.url:  # nats-py not even imported (``trioscope.bus``)
        task_status.started(None)
        return
    async with trioscope.bus.open_report_bus(settings) as bus:
        task_status.started(bus)
        await trio.sleep_forever()


async def serve(settings: Settings, out: TextIO, worker: ServingWorker | None = None) -> ExitCode:
    """Run until SIGINT/SIGTERM; return the process exit code. ``worker``: this
    is one of ``--workers`` processes (None: the only one), which binds nothing
    and runs no local probe (its parent does both, once)."""
    budget = settings.server.shutdown_timeout
    before, after = raise_open_files_limit()  # each process its own; said once, when it serves
    config = hypercorn_config(settings)
    if tls_unusable(settings, config):
        return ExitCode.FAILED
    if worker is not None:
        sockets = inherited(worker)
    else:
        try:
            sockets = listen(config)
        except OSError as exc:
            log.error("cannot listen on %s: %s", bind_address(settings), exc.strerror or exc)
            return ExitCode.FAILED
    # Off the event loop: a PostgreSQL server may take its connect timeout to answer.
    store = await trio.to_thread.run_sync(_open_data_dir, settings)
    if store is None:
        close_sockets(sockets)
        return ExitCode.FAILED
    reader = store.reader
    code = ExitCode.OK
    stop = trio.Event()
    serve_now = trio.Event()
    second = _SecondSignal()
    shielded = Cutoff()  # the actors' (ActorSystem.cutoff)
    writes = client_writes(config)
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            with trio.CancelScope() as everything:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_watch_signals, signals, stop, everything, budget, second, (shielded, writes))
                    if (trimmer := _trimmer()) is not None:
                        nursery.start_soon(return_freed_memory, settings.server.memory_trim_interval, trimmer)
                    if worker is not None:
                        nursery.start_soon(_watch_parent, worker.parent_fd, stop, serve_now)
                    bus = await nursery.start(_report_bus, settings)
                    async with open_actor_system(supervision_tree(settings, reader=reader, bus=bus),
                                                 cutoff=shielded) as system:
                        await resume_open_queues(system, reader)
                        app = create_app(system, settings, reader, worker=None if worker is None else worker.index,
                                         bus=bus)
                        # A held worker (with a bus only) asked to stop before it served skips the HTTP server.
                        held = bus if worker is not None and worker.hold else None
                        if held is None or await _hold_connections(held, serve_now, stop, out):
                            async with trio.open_nursery() as http:
                                binds = await http.start(_serve_http, app, config, sockets, stop)
                                if worker is None or worker.index == 1:
                                    log.info("%s", open_files_line(before, after,
                                                                   resource.getrlimit(resource.RLIMIT_NOFILE)[1]),
                                             extra={"event": "open_files_limit", "open_files": after})
                                    shared = shared_room_warning(settings.limits.connections_per_address, after)
                                    if shared is not None:
                                        log.warning("%s", shared, extra={"event": "connections_per_address_no_cap"})
                                if settings.agents.local_probe and binds and worker is None:
                                    http.start_soon(run_local_probe, probe_url(binds[0]), stop, settings.server.tls_cert or None)
                                if (warning := open_reads_warning(settings)) is not None:
                                    log.warning("%s", warning.removeprefix("WARNING: "))
                                if (warning := any_name_warning(settings)) is not None:
                                    log.warning("%s", warning, extra={"event": "any_host_name_answered"})
                                if worker is None or worker.index == 1:
                                    if (warning := typical_host_warning(settings)) is not None:
                                        log.warning("%s", warning, extra={"event": "memory_budget_below_typical_host"})
                                print(banner(settings, app, binds), file=out, flush=True)
                                await stop.wait()
                                # Hypercorn cancels its connections when its graceful phase ends, but
                                # for their writes, which are shielded: they end then too.
                                writes.cut(trio.current_time() + config.graceful_timeout)
                                stop_live_updates(app)  # WebSockets would hold Hypercorn's drain up
                            if writes.cut_short:
                                log.warning("closed %d connection(s) still blocked writing to clients that read "
                                            "nothing when the drain of requests ended (%s, half of "
                                            "--shutdown-timeout)", writes.cut_short,
                                            format_duration(config.graceful_timeout),
                                            extra={"event": "writes_cut_at_shutdown", "connections": writes.cut_short})
                        log.info("http server stopped; stopping actors")
                    log.info("actors stopped")
                    nursery.cancel_scope.cancel()
            if everything.cancelled_caught and second.signum is not None:
                code = second.exit_code()
                log.warning("received %s again: stopped at once, without finishing the graceful shutdown "
                            "(exit code %d)", second.signum.name, code)
            elif everything.cancelled_caught:
                log.error("shutdown did not finish within %s; cancelled what was left", format_duration(budget))
                code = ExitCode.FAILED
    except* RestartIntensityExceeded:
        log.critical("the root supervisor gave up; exiting")
        code = ExitCode.FAILED
    finally:
        close_sockets(sockets)
        store.unlock()
    if code is ExitCode.OK:
        log.info("stopped cleanly")
    return code
