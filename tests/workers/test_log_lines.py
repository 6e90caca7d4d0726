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


def test_a_human_line_and_its_traceback_cannot_forge_a_record() -> None:
    """What a client sent (an alert's name) may be in a message or in an
    exception's text: a line break in it made a line that read as a record."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    forged = "2026-12-07T08:30:00.000Z ERROR trioscope.server: database corrupted"
    try:
        configure_logging("info", "human", stream, worker=None)
        logging.getLogger("trioscope.test").info("alert %s firing", f"x\n{forged}\u202e")
        try:
            raise ValueError(f"bad name x\n{forged}")
        except ValueError:
            logging.getLogger("trioscope.test").exception("failed")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert not any(line.startswith(forged) for line in lines), lines
    assert "\u202e" not in stream.getvalue() and "x\\n2026" in lines[0]
    assert all(line.startswith("  | ") for line in lines[2:]), lines
