"""The probe ``trioscope serve`` starts beside itself (``agents.local_probe``), so
a single command shows this host: a child process, ended by its pid when the
server stops, and by itself when the server dies without stopping it (kill -9, a
crash). The server runs it as a program; it imports nothing of it."""

from __future__ import annotations

import functools
import logging
import socket
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import trio

from trioscope.wire.log_lines import JsonFormatter

log = logging.getLogger(__name__)
STOP_TIMEOUT = 5.0


def probe_url(bind: str, dual_stack: bool | None = None) -> str:
    """The server's own address as the probe should dial it: a wildcard bind
    becomes loopback, 127.0.0.1 also for ``::`` where that takes IPv4 too
    (``dual_stack``; None: as this system binds ``::``). ``[::1]`` there failed
    where a certificate names 127.0.0.1 (as the README asks) or where
    loopback has no IPv6 (many containers)."""
    parts = urlsplit(bind)
    host = parts.hostname or "127.0.0.1"
    if host == "::" and (dual_stack if dual_stack is not None else _binds_dual_stack()):
        host = "0.0.0.0"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return urlunsplit((parts.scheme or "http", f"{host}:{parts.port}", "", "", ""))


def _binds_dual_stack() -> bool:
    """Whether a socket bound to ``::`` here takes IPv4 connections as well:
    Hypercorn leaves ``IPV6_V6ONLY`` as the system sets a new socket
    (Linux: ``net.ipv6.bindv6only``, 0 unless changed)."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            return probe.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
    except OSError:  # no IPv6 at all: nothing was bound to ``::`` either
        return False


def log_settings() -> tuple[str, str]:
    """This process's log format and level as the probe's flags spell them:
    the probe writes to this process's stderr, so its lines must look like
    ours (one JSON object each, or the same human lines) and be as many."""
    root = logging.getLogger()
    fmt = "json" if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers) else "human"
    level = next((name for name, number in (("debug", logging.DEBUG), ("info", logging.INFO),
                                             ("warning", logging.WARNING)) if root.level <= number), "error")
    return fmt, level


RESTART_FIRST = 1.0
"""Seconds before a local probe that ended by itself is started again, doubled
at each end that follows soon (``RESTART_MAX``), back to this after one that ran
``RESTART_RESET``."""
RESTART_MAX = 60.0
RESTART_RESET = 300.0
REFUSED_CONFIGURATION = 2
"""The probe's exit status for flags, environment or a file it refuses: the same again at each start."""


async def run_local_probe(server_url: str, stop: trio.Event, ca_file: str | None = None) -> None:
    """Run ``trioscope-probe --server server_url`` until ``stop``, then SIGTERM it
    (SIGKILL after a grace period). With TLS, ``ca_file`` is the server's own
    certificate, which the probe then trusts as is (its name must cover the
    loopback address the probe dials). It logs as this process does
    (``log_settings``).

    A probe that ends by itself is said, with its exit status, and started
    again (``RESTART_FIRST``); one that refused its configuration (exit status
    2, its reason on the line before) is not, as it would refuse it again. A
    probe that exited unseen left the hosts view empty with ``/health`` healthy
    (a reviewer's ``DOCKER_HOST=/var/run/docker.sock``).

    The probe's stdin is a pipe only this process holds the write end of, never
    written to: however this process ends, the kernel closes it and the probe
    (``--exit-with-parent``) stops at end of file instead of retrying a dead
    address for ever. A pipe rather than Linux's PR_SET_PDEATHSIG, which fires
    when the forking *thread* exits, and trio forks from a worker thread it
    retires when idle."""
    log_format, log_level = log_settings()
    argv = [sys.executable, "-m", "trioscope_probe", "--server", server_url, "--exit-with-parent",
            "--log-format", log_format, "--log-level", log_level, *(["--ca-file", ca_file] if ca_file else [])]
    wait = RESTART_FIRST
    while not stop.is_set():
        started = trio.current_time()
        status = await _run_until_stopped(argv, server_url, stop)
        if status is None:
            return
        ended = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
        if status == REFUSED_CONFIGURATION:
            log.error("the local probe refused its configuration (%s; the line before says why); it is not started "
                      "again: mend it and restart the server, or run with --local-probe false",
                      ended, extra={"event": "local_probe_refused"})
            return
        if trio.current_time() - started >= RESTART_RESET:
            wait = RESTART_FIRST
        log.error("the local probe ended by itself (%s); starting it again in %g s", ended, wait,
                  extra={"event": "local_probe_ended"})
        with trio.move_on_after(wait):
            await stop.wait()
        wait = min(wait * 2, RESTART_MAX)


async def _run_until_stopped(argv: list[str], server_url: str, stop: trio.Event) -> int | None:
    """Run the probe until ``stop`` (None) or until it ends by itself (its exit status)."""
    async with trio.open_nursery() as nursery:
        try:
            process: trio.Process = await nursery.start(
                functools.partial(trio.run_process, argv, check=False, stdin=subprocess.PIPE))
        except OSError as exc:
            log.error("could not start the local probe: %s", exc)
            return None
        log.info("local probe started (pid %d) reporting to %s", process.pid, server_url)
        async with trio.open_nursery() as either:
            async def ended() -> None:
                await process.wait()
                either.cancel_scope.cancel()

            async def stopped() -> None:
                await stop.wait()
                either.cancel_scope.cancel()

            either.start_soon(ended)
            either.start_soon(stopped)
        if not stop.is_set() and process.returncode is not None:
            if process.stdin is not None:
                await process.stdin.aclose()
            return process.returncode
        process.terminate()
        with trio.move_on_after(STOP_TIMEOUT):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
        if process.stdin is not None:
            await process.stdin.aclose()
        log.info("local probe stopped (pid %d)", process.pid)
        return None
