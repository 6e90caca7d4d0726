"""Every log line of a worker says which worker wrote it."""

from __future__ import annotations

import io
import json
import logging

from trioscope.wire.log_lines import configure_logging


def _line(fmt: str, worker: int | None) -> str:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        configure_logging("info", fmt, stream, worker=worker)
        logging.getLogger("trioscope.test").info("hello %s", "there")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return stream.getvalue().strip()


def test_human_lines_name_the_worker():
    assert "INFO  [worker 3] trioscope.test: hello there" in _line("human", 3)
    assert "INFO  trioscope.test: hello there" in _line("human", None)


def test_json_lines_carry_a_worker_key():
    assert json.loads(_line("json", 2))["worker"] == 2
    assert "worker" not in json.loads(_line("json", None))
