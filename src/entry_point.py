"""The ``trioscope`` command (and ``python -m trioscope``): Ctrl-C and SIGTERM
are one line from the moment it starts, then ``trioscope.cli`` runs it.

Importing ``trioscope.cli`` takes 0.4-0.9 s (more on a loaded machine, and
``serve`` pays it twice when it re-executes itself for its allocator): a
Ctrl-C then was a traceback through the imports, and SIGTERM ended it with
143 and nothing said. This module imports nothing of trioscope's but the exit
codes, so it is in place before that. A command with something to say of
what it did before it was stopped takes SIGTERM as it takes Ctrl-C
(``sigterm_raises``)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator

from trioscope.exit_code import ExitCode


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    writes_any_text()
    try:
        from trioscope.cli import main as run_command
    except KeyboardInterrupt:
        print("trioscope: interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
    run_command()


def writes_any_text() -> None:
    """Standard output writes what its encoding cannot as escapes
    (``\\u2264``), as Python's standard error does already: under a locale that
    is not UTF-8 (``LANG=en_US.ISO-8859-1``, ``PYTHONIOENCODING=ascii``) the
    serve banner's "≤", a user's name in ``audit``, a path in ``store copy``'s
    summary raised UnicodeEncodeError: the server did not start, a copy done
    said it failed."""
    stdout = sys.stdout
    if stdout is not None and hasattr(stdout, "reconfigure") and stdout.errors == "strict":
        stdout.reconfigure(errors="backslashreplace")


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM where ``serve`` does not handle it (before it installs its own
    handlers, after it lets them go) or for another command (outside
    ``sigterm_raises``): ends the process at once, as the default action
    would, saying so."""
    with contextlib.suppress(OSError):
        os.write(sys.stderr.fileno(), b"trioscope: received SIGTERM; stopped\n")
    os._exit(ExitCode.TERMINATED)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised within ``sigterm_raises``. A KeyboardInterrupt, so that
    what Ctrl-C stops cleanly SIGTERM stops alike: ``except Exception`` lets it
    through, and psycopg cancels the statement it waits on."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within it, SIGTERM raises ``Terminated`` where the main thread is, as
    Ctrl-C raises KeyboardInterrupt, instead of ending the process at once
    (``_terminated``): for a command that says what it did before it was
    stopped (``store copy``: what was copied, and that the target holds part
    of the source). Only in the main thread, where Python runs signal handlers."""
    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
