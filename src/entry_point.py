"""The ``trioscope`` command (and ``python -m trioscope``): Ctrl-C and SIGTERM
are one line from the moment it starts, then ``trioscope.cli`` runs it.

Importing ``trioscope.cli`` takes 0.4-0.9 s (more on a loaded machine, and
``serve`` pays it twice when it re-executes itself for its allocator): a
Ctrl-C then was a traceback through the imports, and SIGTERM ended it with
143 and nothing said. This module imports nothing of trioscope's but the exit
codes, so it is in place before that."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from trioscope.exit_code import ExitCode


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    try:
        from trioscope.cli import main as run_command
    except KeyboardInterrupt:
        print("trioscope: interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
    run_command()


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM where ``serve`` does not handle it (before it installs its own
    handlers, after it lets them go) or for another command: ends the process
    at once, as the default action would, saying so."""
    with contextlib.suppress(OSError):
        os.write(sys.stderr.fileno(), b"trioscope: received SIGTERM; stopped\n")
    os._exit(ExitCode.TERMINATED)
