"""A worker that dies while it starts is logged as having exited, not as
having timed out: "did not start within 2m0s; killing it", half a second
after its start, then "killed by SIGKILL", when no timeout had happened."""

from __future__ import annotations

import logging
import socket
import sys

import attrs
import pytest

from trioscope.config import Settings
from trioscope.workers import _parent

# Closes its output, as a dying interpreter does, a moment before it is gone.
DIES_STARTING = (sys.executable, "-c", "import os, time; os.close(1); time.sleep(0.5); raise SystemExit(3)")


async def test_a_worker_that_dies_starting_is_said_to_have_exited(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(_parent, "WORKER_ARGV", DIES_STARTING)
    s = Settings.defaults()
    settings = attrs.evolve(s, server=attrs.evolve(s.server, workers=2))
    with socket.socket() as listener, caplog.at_level(logging.INFO, logger="trioscope.workers"):
        pool = _parent._Pool(settings, [listener], secure=False)
        assert await pool._run_once(1, first=True) == 3
    said = [r.getMessage() for r in caplog.records]
    assert not any("did not start" in line or "killing it" in line for line in said), said
