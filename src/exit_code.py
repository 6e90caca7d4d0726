"""The exit codes of every ``trioscope`` command, in a module of their own:
``trioscope serve`` decides its allocator (and may re-execute itself) before it
imports the server, so what it needs before that must be cheap to import."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    """Could not listen, the root supervisor gave up, or shutdown overran."""
    USAGE = 2
    """Bad configuration or command line."""
    INTERRUPTED = 128 + 2
    """Ctrl-C (SIGINT) ended a command; for ``serve``, a second one stopped it
    at once, before the graceful shutdown finished (128 + the signal's number,
    as shells report a process that Ctrl-C ended)."""
    TERMINATED = 128 + 15
    """SIGTERM ended a command; for ``serve``, a second one stopped it at once (128 + SIGTERM)."""
