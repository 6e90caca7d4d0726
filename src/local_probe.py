"""The probe ``trioscope serve`` starts beside itself (``agents.local_probe``), so
a single command shows this host: a child process, ended by its pid when the
server stops, and by itself when the server dies without stopping it (kill -9, a
crash). The server runs it as a program; it imports nothing of it."""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import trio

from trioscope.wire.log_lines import JsonFormatter

log = logging.getLogger(__name__)
STOP_TIMEOUT = 5.0


def probe_url(bind: str) -> str:
    """The server's own address as the probe should dial it (a wildcard bind
    becomes loopback)."""
    parts = urlsplit(bind)
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return urlunsplit((parts.scheme or "http", f"{host}:{parts.port}", "", "", ""))


def log_settings() -> tuple[str, str]:
    """This process's log format and level as the probe's flags spell them:
    the probe writes to this process's stderr, so its lines must look like
    ours (one JSON object each, or the same human lines) and be as many."""
    root = logging.getLogger()
    fmt = "json" if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers) else "human"
    level = next((name for name, number in (("debug", logging.DEBUG), ("info", logging.INFO),
                                             ("warning", logging.WARNING)) if root.level <= number), "error")
    return fmt, level


async def run_local_probe(server_url: str, stop: trio.Event, ca_file: str | None = None) -> None:
    """Run ``trioscope-probe --server server_url`` until ``stop``, then SIGTERM it
    (SIGKILL after a grace period). With TLS, ``ca_file`` is the server's own
    certificate, which the probe then trusts as is (its name must cover the
    loopback address the probe dials). It logs as this process does
    (``log_settings``).

    The probe's stdin is a pipe only this process holds the write end of, never
    written to: however this process ends, the kernel closes it and the probe
    (``--exit-with-parent``) stops at end of file instead of retrying a dead
    address for ever. A pipe rather than Linux's PR_SET_PDEATHSIG, which fires
    when the forking *thread* exits, and trio forks from a worker thread it
    retires when idle."""
    log_format, log_level = log_settings()
    argv = [sys.executable, "-m", "trioscope_probe", "--server", server_url, "--exit-with-parent",
            "--log-format", log_format, "--log-level", log_level, *(["--ca-file", ca_file] if ca_file else [])]
    async with trio.open_nursery() as nursery:
        try:
            process: trio.Process = await nursery.start(
                functools.partial(trio.run_process, argv, check=False, stdin=subprocess.PIPE))
        except OSError as exc:
            log.error("could not start the local probe: %s", exc)
            return
        log.info("local probe started (pid %d) reporting to %s", process.pid, server_url)
        await stop.wait()
        process.terminate()
        with trio.move_on_after(STOP_TIMEOUT):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
        if process.stdin is not None:
            await process.stdin.aclose()
        log.info("local probe stopped (pid %d)", process.pid)
