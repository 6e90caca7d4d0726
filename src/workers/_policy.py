"""What the parent of ``--workers`` decides, as small pure functions: whether a
worker that exited is restarted, how its exit is told, which exit code the
parent ends with, and when ``--workers`` is refused. Tested directly."""

from __future__ import annotations

import signal

import attrs

from trioscope.config import Settings
from trioscope.runtime import Backoff, RestartHistory, intensity_exceeded, record_restart
from trioscope.exit_code import ExitCode
from trioscope.store import sqlite_path
from trioscope.system import database_path

RESTART_INTENSITY = 5
"""Restarts of one worker allowed within ``RESTART_PERIOD``; one more and the
parent gives up. Counted per worker rather than for the pool (OTP counts per
supervisor) so that one bad event killing every worker at once (the OOM killer,
an operator's ``pkill``) is N restarts of N workers, not a crash loop."""
RESTART_PERIOD = 30.0
BACKOFF = Backoff(initial=0.1, maximum=5.0)
"""A worker failing on something that is down (the database) does not burn its
intensity in the time Python takes to start."""


@attrs.frozen(kw_only=True)
class Restart:
    """Start the worker again after ``delay`` seconds."""

    delay: float
    history: RestartHistory


@attrs.frozen(kw_only=True)
class GiveUp:
    """The worker kept failing: stop every worker and exit 1."""

    history: RestartHistory


def after_exit(history: RestartHistory, now: float) -> Restart | GiveUp:
    """What to do about a worker that exited while the pool was not stopping,
    given the times of its earlier restarts (``history``) and ``now`` (seconds,
    any monotonic clock)."""
    history = record_restart(history, now, RESTART_PERIOD)
    if intensity_exceeded(history, RESTART_INTENSITY):
        return GiveUp(history=history)
    return Restart(delay=BACKOFF.delay(history), history=history)


def describe_exit(returncode: int) -> str:
    """``exited with code 1`` or ``was killed by SIGKILL`` (Popen's negative codes)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


CLEAN_EXITS = (0, None, -signal.SIGTERM)
"""A worker's exit code at shutdown that is no failure: it stopped cleanly, it
never started, or the parent's SIGTERM reached it while it was still starting
(before it handled signals)."""


def pool_exit_code(exits: dict[int, int | None], *, gave_up: bool, overran: bool) -> ExitCode:
    """The parent's exit code once every worker is gone: 0 only when nothing
    went wrong and every worker (``exits``: index -> its exit code at shutdown,
    None if it never started) stopped cleanly itself."""
    if gave_up or overran or any(code not in CLEAN_EXITS for code in exits.values()):
        return ExitCode.FAILED
    return ExitCode.OK


def workers_refusal(settings: Settings) -> str | None:
    """Why ``server.workers`` cannot be served with this store, or None.

    SQLite is one process's file: its single writer (the store actor) and the
    in-process queues assume nobody else hands out commands, so several
    processes on it would deliver a command twice or lose a wake-up."""
    workers = settings.server.workers
    if workers <= 1 or sqlite_path(database_path(settings)) is None:
        return None
    store = "the default SQLite file in data_dir" if not settings.store.database else "an SQLite file"
    return (f"--workers {workers} (server.workers, TRIOSCOPE_SERVER_WORKERS) needs a PostgreSQL store, "
            f"and store.database is {store}, which one process alone may use. Give "
            "--database postgresql://USER@HOST/DB (store.database, TRIOSCOPE_DATABASE), "
            "or serve with --workers 1.")
