"""``trioscope serve --workers N``: N serving processes on one port, and the
small parent that supervises them.

How the port is shared: the parent binds and listens once (one socket per
address of ``server.host``), and every worker inherits those listening
sockets (``pass_fds``), as Hypercorn's own
multi-worker runner does, rather than N ``SO_REUSEPORT`` sockets. Why:
- connections waiting in the accept queue belong to the socket, not to a
  worker, so a worker that dies loses none of them; with ``SO_REUSEPORT``
  the kernel resets those queued on the dead worker's socket;
- the kernel wakes the workers waiting in accept, so an idle worker takes the
  next connection while a busy one finishes its work, where ``SO_REUSEPORT``
  hashes each connection to a fixed worker, busy or not;
- the port is taken once, before anything starts (a port in use, or ``--port
  0``, are the single-process cases), and no other program of the same user
  can join it.
Hypercorn's runner itself is not used: it forks workers that each build the
app from an import path, while each of ours runs ``trioscope.server.serve``,
the supervision tree and Hypercorn in one ``trio.run``, as one process does.

The workers are fresh interpreters (``python -m trioscope.workers``), not
forks of this one (forking a process that runs trio and threads is unsafe).
Each reads its settings from a pipe on its stdin and treats that pipe's end of
file as "the parent is gone": a parent killed with -9 leaves no worker behind.
Workers run in their own process group, so Ctrl-C in a terminal reaches the
parent only, which then stops them in order.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import TextIO

import attrs
import trio

from trioscope.config import Settings, format_duration
from trioscope.listening import close_sockets, listen
from trioscope.local_probe import probe_url, run_local_probe
from trioscope.server import (
    BANNER_END,
    HOLDING,
    SERVE_NOW,
    ExitCode,
    _open_data_dir,
    bind_address,
    hypercorn_config,
    tls_unusable,
)

from ._child import WorkerStart, encode_start
from ._policy import CLEAN_EXITS, RESTART_INTENSITY, RESTART_PERIOD, GiveUp, after_exit, describe_exit, pool_exit_code

log = logging.getLogger("trioscope.workers")

WORKER_ARGV = (sys.executable, "-m", "trioscope.workers")
START_TIMEOUT = 120.0
"""Seconds a worker may take from its start to its banner's last line (Python starting
on a busy machine, the schema check, reloading open commands). Not counted while
a held worker reads the report stream (``HOLDING`` to the banner: another worker
serves meanwhile, and a long stream takes minutes); counted again, from then,
once it is told to serve (``SERVE_NOW``)."""
EXIT_MARGIN = 5.0
"""Seconds the parent waits past ``server.shutdown_timeout`` for workers to exit:
each bounds its own shutdown by that timeout, and then needs a moment to exit
(measured: a worker that held 10,000 polls on a loaded 2-core machine needed
more than 2 s to tear them down and free its heap)."""
END_OF_BANNER = BANNER_END.encode()
"""The end of a worker's banner's last line: "Ready. ..." without a bus, "Serving; ..." with one."""
LISTENING = b"trioscope listening on "
HOLDING_LINE = HOLDING.encode()
READY_LATER = "ready (/health/ready) once it has read the report stream"
"""With a bus, what a worker whose banner ended is not yet when it started
while no other worker served (the first start, or every other one down): it
serves, answering 503 ``catching_up`` with its progress, until it has read the
report stream to its end (clients are told, not left waiting in the accept
queue). The parent cannot ask one worker's ``/health/ready`` through the shared
port, so its log says when a worker will be ready rather than calling it ready.

A worker that starts while another serves (a restart after a crash, a later
slot) is held instead (``ServingWorker.hold``): it takes no connection until it
has read the stream (~90 s for a worker restarted on a long stream), so it is
ready once it serves; if every serving worker exits meanwhile, the parent tells
it to serve at once (``SERVE_NOW``)."""


class _Pool:
    """The workers of one ``serve --workers N``; one task per worker slot."""

    def __init__(self, settings: Settings, listeners: list[socket.socket], secure: bool) -> None:
        # The parent runs the one local probe: N workers would start N probes.
        self.settings = attrs.evolve(settings, agents=attrs.evolve(settings.agents, local_probe=False))
        self.count = settings.server.workers
        self.listeners = listeners
        self.secure = secure
        self.stopping = trio.Event()
        self.processes: dict[int, trio.Process] = {}
        self.exits: dict[int, int | None] = dict.fromkeys(range(1, self.count + 1))
        self.gave_up = False
        self.banner = b""
        self.base_url = ""
        self.serving: set[int] = set()
        """Workers that printed their banner (take connections) and run."""
        self.held: dict[int, tuple[trio.Process, trio.CancelScope]] = {}
        """Workers started held, not told yet to serve: each process, and the
        scope bounding its wait for the banner (``START_TIMEOUT`` again once told)."""
        self.started_once: set[int] = set()
        """Workers that have printed their banner at least once (ready, or with
        a bus serving: ``READY_LATER``): the pool's banner waits for all."""
        self.all_started = trio.Event()
        self.spawning = 0
        """Workers being started: the listening sockets are handed to each (``pass_fds``)."""

    def stop(self) -> None:
        """Ask every running worker to stop gracefully (each bounds its own shutdown)."""
        self.stopping.set()
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        self._stop_listening()

    def _stop_listening(self) -> None:
        """Close this process's copies of the listening sockets once the pool stops
        and no worker is being handed it. Each worker closes its own as it
        starts its shutdown (a single process refuses new connections at
        once); with this copy open the port kept listening until the parent
        exited, and connections made meanwhile waited in the accept queue,
        unanswered, to be reset at the end, where they are refused now (a
        client or a load balancer retries a refused connection elsewhere)."""
        if self.stopping.is_set() and not self.spawning:
            for listener in self.listeners:
                listener.close()

    def stop_now(self) -> None:
        """A second signal: workers stop at once (a second SIGTERM means that to them)."""
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)

    async def run_slot(self, index: int) -> None:
        """Keep worker ``index`` running until the pool stops or it keeps failing."""
        history: tuple[float, ...] = ()
        first = True
        while not self.stopping.is_set():
            code = await self._run_once(index, first)
            first = False
            if self.stopping.is_set() or code is None:
                return
            decision = after_exit(history, trio.current_time())
            if isinstance(decision, GiveUp):
                log.critical("worker %d %s, its restart %d within %s (at most %d): giving up; stopping every worker",
                             index, describe_exit(code), len(decision.history), format_duration(RESTART_PERIOD),
                             RESTART_INTENSITY)
                self.gave_up = True
                self.stop()
                return
            history = decision.history
            log.error("worker %d %s; restarting it in %.1fs (restart %d of at most %d within %s)",
                      index, describe_exit(code), decision.delay, len(history), RESTART_INTENSITY,
                      format_duration(RESTART_PERIOD))
            await self._serve_if_none_serves()  # it was the last one serving: see READY_LATER
            with trio.move_on_after(decision.delay):
                await self.stopping.wait()

    async def _run_once(self, index: int, first: bool) -> int | None:
        """Start worker ``index`` and wait for it to exit; its exit code (None: the
        pool stopped before it could start)."""
        # Held while another worker serves: its connections meet a ready worker meanwhile.
        hold = bool(self.settings.bus.url) and bool(self.serving)
        if self.stopping.is_set():  # the listening sockets are closed
            return None
        fds = tuple(listener.fileno() for listener in self.listeners)
        start = WorkerStart.of(self.settings, index, fds, self.secure, hold=hold)
        self.spawning += 1
        try:
            process = await trio.lowlevel.open_process(
                WORKER_ARGV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=fds,
                process_group=0)
        except OSError as exc:  # out of processes, memory or descriptors: a failed start like any other
            log.error("could not start worker %d: %s", index, exc)
            return 1
        finally:
            self.spawning -= 1
            self._stop_listening()  # the pool stopped while it started
        self.processes[index] = process
        assert process.stdin is not None and process.stdout is not None
        try:
            if self.stopping.is_set():
                process.send_signal(signal.SIGTERM)
            # The stdin pipe stays open for the worker's life: its end of file
            # tells the worker that this process is gone.
            with contextlib.suppress(trio.BrokenResourceError):  # it died at once: its exit code tells
                await process.stdin.send_all(encode_start(start))
            log.info("worker %d %s (pid %d)", index, "starting" if first else "restarting", process.pid)
            started = False
            with trio.move_on_after(START_TIMEOUT) as waiting:
                if hold:
                    self.held[index] = (process, waiting)
                    await self._serve_if_none_serves()  # the others may have exited since it was started

                def holding() -> None:
                    if index in self.held:  # reading the stream, not told to serve: no START_TIMEOUT
                        waiting.deadline = math.inf
                        log.info("worker %d (pid %d) reads the report stream before it takes connections; "
                                 "serving meanwhile: worker %s", index, process.pid,
                                 ", ".join(map(str, sorted(self.serving))))

                started = await self._read_banner(process.stdout, keep=not self.banner, holding=holding)
            was_held = self.held.pop(index, None) is not None
            if started:
                if self.settings.bus.url and not was_held:
                    # Not ready yet: see READY_LATER.
                    log.info("worker %d serving (pid %d); %s", index, process.pid, READY_LATER)
                else:
                    log.info("worker %d ready (pid %d)", index, process.pid)
                self.serving.add(index)
                self.started_once.add(index)
                if len(self.started_once) == self.count:
                    self.all_started.set()
            # Its output's end is no timeout: a worker that dies closes it before it is reaped.
            elif waiting.cancelled_caught and not self.stopping.is_set():
                log.error("worker %d (pid %d) did not start within %s; killing it",
                          index, process.pid, format_duration(START_TIMEOUT))
                process.kill()
            code = await process.wait()
        except BaseException:
            # Cancelled (the shutdown overran) or failed: leave no worker behind.
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
            raise
        finally:
            self.serving.discard(index)
            self.held.pop(index, None)
            with trio.CancelScope(shield=True):
                await process.stdin.aclose()
                await process.stdout.aclose()
        self.exits[index] = code
        return code

    async def _serve_if_none_serves(self) -> None:
        """No worker serves while some are held: tell each held one to serve
        now (``SERVE_NOW``), answering 503 ``catching_up`` until it has read the
        stream, rather than leave every new connection waiting in the accept
        queue until one has."""
        if self.serving or self.stopping.is_set():
            return
        for index, (process, waiting) in list(self.held.items()):
            del self.held[index]
            waiting.deadline = min(waiting.deadline, trio.current_time() + START_TIMEOUT)
            log.warning("no worker serves: worker %d (pid %d) takes connections before it has read the report "
                        "stream; %s", index, process.pid, READY_LATER)
            assert process.stdin is not None
            # Gone meanwhile: its exit code tells.
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await process.stdin.send_all(SERVE_NOW)

    async def _read_banner(self, stdout: trio.abc.ReceiveStream, keep: bool, holding: Callable[[], None]) -> bool:
        """Read the worker's banner up to its last line (True), or to its end
        (False); call ``holding`` at a held worker's ``HOLDING`` line, which is
        no part of the banner."""
        buffer = b""
        # Whole lines only: a read may end inside the last line.
        while not any(line.rstrip().endswith(END_OF_BANNER) for line in buffer.split(b"\n")[:-1]):
            chunk = await stdout.receive_some()
            if not chunk:
                return False
            buffer += chunk
            first, newline, rest = buffer.partition(b"\n")
            if newline and first.startswith(HOLDING_LINE):
                buffer = rest
                holding()
        if keep:
            self.banner = buffer
            first_line = buffer.splitlines()[0]
            if first_line.startswith(LISTENING):
                self.base_url = first_line.removeprefix(LISTENING).decode().strip()
        return True


async def _watch_signals(signals: AsyncIterator[int], pool: _Pool, everything: trio.CancelScope,
                         budget: float) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if not pool.stopping.is_set():
            log.info("received %s: stopping %d workers (at most %s)", name, pool.count, format_duration(budget))
            pool.stop()
            everything.deadline = trio.current_time() + budget + EXIT_MARGIN
        else:
            log.warning("received %s again: workers stop now", name)
            pool.stop_now()


async def _announce(pool: _Pool, out: TextIO, settings: Settings) -> None:
    """Print the first worker's banner once every worker has started (the "listening on"
    line means the whole port is served), then run the local probe until the
    pool stops. Cancelled with the pool if some worker never starts."""
    await pool.all_started.wait()
    if settings.bus.url:
        log.info("%d workers serving on %s; each %s", pool.count, pool.base_url, READY_LATER)
    else:
        log.info("%d workers ready on %s", pool.count, pool.base_url)
    out.write(pool.banner.decode())
    out.flush()
    if settings.agents.local_probe and pool.base_url:
        await run_local_probe(probe_url(pool.base_url), pool.stopping, settings.server.tls_cert or None)


async def run_workers(settings: Settings, out: TextIO) -> ExitCode:
    """Serve on one port with ``server.workers`` processes until SIGINT/SIGTERM;
    return the exit code: 0 every worker stopped cleanly, 1 cannot listen, a
    worker kept failing (restart intensity) or the shutdown overran."""
    budget = settings.server.shutdown_timeout
    config = hypercorn_config(settings)
    if tls_unusable(settings, config):
        return ExitCode.FAILED
    try:
        sockets = listen(config)
    except OSError as exc:
        log.error("cannot listen on %s: %s", bind_address(settings), exc.strerror or exc)
        return ExitCode.FAILED
    try:
        # Once, here: N workers starting together would race to create the
        # schema and the token secret.
        store = await trio.to_thread.run_sync(_open_data_dir, settings)
        if store is None:
            return ExitCode.FAILED
        store.reader.close()
        store.unlock()  # (none: workers need PostgreSQL)
        # One socket per address of server.host: TLS ones when a certificate is configured.
        pool = _Pool(settings, [*sockets.secure_sockets, *sockets.insecure_sockets],
                     secure=bool(sockets.secure_sockets))
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            with trio.CancelScope() as everything:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_watch_signals, signals, pool, everything, budget)
                    nursery.start_soon(_announce, pool, out, settings)
                    async with trio.open_nursery() as slots:
                        for index in range(1, pool.count + 1):
                            slots.start_soon(pool.run_slot, index)
                    nursery.cancel_scope.cancel()
        overran = everything.cancelled_caught
        if overran:
            log.error("the workers did not stop within %s; killed what was left", format_duration(budget))
    finally:
        close_sockets(sockets)
    code = pool_exit_code(pool.exits, gave_up=pool.gave_up, overran=overran)
    if not pool.gave_up:
        for index, exit_code in sorted(pool.exits.items()):
            if exit_code not in CLEAN_EXITS:
                log.error("worker %d %s while stopping", index, describe_exit(exit_code))
    if code is ExitCode.OK:
        log.info("stopped cleanly")
    return code
