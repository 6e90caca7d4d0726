"""The parent's decisions about its workers, as pure functions."""

from __future__ import annotations

import pickle
import signal

import attrs

from trioscope.config import Settings
from trioscope.server import ExitCode
from trioscope.workers import (
    GiveUp, Restart, WorkerStart, after_exit, describe_exit, pool_exit_code, workers_refusal,
)
from trioscope.workers._child import encode_start
from trioscope.workers._policy import RESTART_INTENSITY, RESTART_PERIOD


def test_exit_restarts_with_growing_delay_until_intensity_then_gives_up():
    history: tuple[float, ...] = ()
    delays = []
    for n in range(RESTART_INTENSITY):
        decision = after_exit(history, now=100.0 + n)
        assert isinstance(decision, Restart)
        delays.append(decision.delay)
        history = decision.history
    assert delays == sorted(delays) and delays[0] < delays[-1]
    assert isinstance(after_exit(history, now=100.0 + RESTART_INTENSITY), GiveUp)


def test_restarts_older_than_the_period_are_forgotten():
    history: tuple[float, ...] = ()
    now = 0.0
    for _ in range(RESTART_INTENSITY * 3):
        decision = after_exit(history, now=now)
        assert isinstance(decision, Restart)
        history = decision.history
        now += RESTART_PERIOD / RESTART_INTENSITY + 0.1


def test_describe_exit_names_the_code_or_the_signal():
    assert describe_exit(1) == "exited with code 1"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(-200) == "was killed by signal 200"


def test_pool_exit_code_is_zero_only_when_every_worker_stopped_cleanly():
    assert pool_exit_code({1: 0, 2: 0}, gave_up=False, overran=False) is ExitCode.OK
    # Never started, or the parent's SIGTERM arrived before the worker handled signals.
    assert pool_exit_code({1: None, 2: -signal.SIGTERM}, gave_up=False, overran=False) is ExitCode.OK
    assert pool_exit_code({1: 0, 2: 1}, gave_up=False, overran=False) is ExitCode.FAILED
    assert pool_exit_code({1: 0, 2: 0}, gave_up=True, overran=False) is ExitCode.FAILED
    assert pool_exit_code({1: 0, 2: 0}, gave_up=False, overran=True) is ExitCode.FAILED


def _with(workers: int, database: str) -> Settings:
    s = Settings.defaults()
    return attrs.evolve(s, server=attrs.evolve(s.server, workers=workers),
                        store=attrs.evolve(s.store, database=database))


def test_more_than_one_worker_needs_postgresql():
    assert workers_refusal(_with(1, "")) is None
    assert workers_refusal(_with(1, "sqlite:/tmp/x.db")) is None
    assert workers_refusal(_with(4, "postgresql://u@h/db")) is None
    assert workers_refusal(_with(4, "postgres://u@h/db")) is None
    refusal = workers_refusal(_with(3, ""))
    assert refusal is not None and "--workers 3" in refusal and "--database postgresql://" in refusal
    assert "--workers 1" in refusal
    assert "an SQLite file" in (workers_refusal(_with(2, "sqlite:/tmp/x.db")) or "")


def test_worker_start_carries_the_settings_as_resolved():
    s = _with(2, "postgresql://u:pw@h/db")
    s = attrs.evolve(s, auth=attrs.evolve(s.auth, secret="x" * 40))
    start = WorkerStart.of(s, 2, (7, 8), secure=True)
    assert start.settings() == s and (start.index, start.listen_fds, start.secure) == (2, (7, 8), True)
    decoded = pickle.loads(encode_start(start)[8:])
    assert decoded == start and decoded.settings() == s
