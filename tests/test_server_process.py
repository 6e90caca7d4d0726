"""The tests' own server harness (tests/server_process.py): whatever it starts, it ends."""

from __future__ import annotations

import os

import pytest

from tests.server_process import ServerProcess


def test_a_server_that_does_not_start_in_time_is_ended_with_its_data_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    server = ServerProcess()
    data_dir = server.data_dir
    monkeypatch.setattr(server, "start", lambda: ServerProcess.start(server, timeout=0.0))
    with pytest.raises(TimeoutError), server:
        pass
    assert server.proc is not None and server.proc.poll() is not None  # it was left running
    assert not os.path.exists(data_dir)
