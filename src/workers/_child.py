"""One serving process of ``--workers``: read what the parent sends on stdin,
then serve like a single ``trioscope serve`` on the inherited sockets."""

from __future__ import annotations

import os
import pickle
import struct
import sys

import attrs
import trio

from trioscope.config import KEYS, Settings, Source
from trioscope.entry_point import writes_any_text
from trioscope.wire.log_lines import configure_logging
from trioscope.server import ExitCode, ServingWorker, serve, tune_interpreter

_LENGTH = struct.Struct("!Q")


@attrs.frozen(kw_only=True)
class WorkerStart:
    """What the parent tells a worker it starts, once, on the worker's stdin.

    The resolved settings rather than the command line again: every worker and
    every restart serves exactly what the parent checked at start, even if the
    configuration file changed since, and the secret stays out of ``ps``."""

    values: dict[str, object]
    """Every key's effective value, by dotted name (``Settings`` itself holds a
    read-only mapping that does not pickle)."""
    origins: dict[str, Source]
    config_file: str | None
    index: int
    """1..N: in log lines, ``/api/v1/runtime`` and the ``worker`` label of ``/metrics``."""
    listen_fds: tuple[int, ...]
    """The parent's listening sockets (one per address of ``server.host``),
    the same descriptor numbers in the worker (``pass_fds``)."""
    secure: bool = False
    """The sockets are TLS ones (Hypercorn's ``secure_sockets``)."""
    hold: bool = False
    """Another worker serves already: with a bus, take connections once the
    report stream is read (``ServingWorker.hold``)."""


    @classmethod
    def of(cls, settings: Settings, index: int, listen_fds: tuple[int, ...], secure: bool = False,
           hold: bool = False) -> WorkerStart:
        """What to tell worker ``index`` to serve with ``settings``."""
        origins = {key.name: source for key in KEYS if (source := settings.source(key.name)) is not None}
        return cls(values={key.name: settings.value(key.name) for key in KEYS}, origins=origins,
                   config_file=settings.config_file, index=index, listen_fds=listen_fds, secure=secure, hold=hold)

    def settings(self) -> Settings:
        return Settings.from_values(self.values, self.origins, self.config_file)


def encode_start(start: WorkerStart) -> bytes:
    """Length-prefixed, so the worker reads exactly this and nothing after it."""
    body = pickle.dumps(start)
    return _LENGTH.pack(len(body)) + body


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = os.read(fd, size - len(chunks))
        if not chunk:
            raise EOFError("the parent closed the pipe before it said what to serve")
        chunks += chunk
    return bytes(chunks)


def worker_main() -> None:
    """Serve until told to stop (SIGTERM from the parent) or until the parent is
    gone (end of file on stdin); exit with ``serve``'s code."""
    try:
        (size,) = _LENGTH.unpack(_read_exactly(0, _LENGTH.size))
        # The parent is this program, on the other end of a pipe only it holds.
        start = pickle.loads(_read_exactly(0, size))  # noqa: S301  # trusted: written by our own parent process
    except EOFError as exc:
        print(f"trioscope worker: {exc}", file=sys.stderr)
        sys.exit(ExitCode.USAGE)
    assert isinstance(start, WorkerStart)
    writes_any_text()  # it prints the banner
    settings = start.settings()
    configure_logging(settings.log.level, settings.log.format, worker=start.index)
    tune_interpreter()
    worker = ServingWorker(index=start.index, listen_fds=start.listen_fds, parent_fd=0, secure=start.secure,
                           hold=start.hold)
    sys.exit(int(trio.run(serve, settings, sys.stdout, worker)))
