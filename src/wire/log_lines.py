"""Where log records go and how they look: one line per record, human-readable
text or one JSON object per line (``--log-format json``), for the server and
the probe alike. It is part of the wire because the two must agree on it: the
server's local probe writes into the server's own stream, and one JSON object
per line (or the same human lines) is what whoever reads that stream parses.

Structured fields passed as ``extra`` (the runtime's ``event`` and ``actor``, for
instance) become JSON keys, or ``key=value`` pairs after the human message.
Nothing here imports the rest of ``trioscope``.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import IO, Any

import orjson

from ._json_text import writable_json

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _utc(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


_UNSEEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
"""Control characters (a line break, an escape sequence) and invisible ones
(bidi overrides, zero-width): in a human line they would forge a line of their
own, or show other text than was logged. Tabs pass."""


def visible_text(message: str) -> str:
    """``message`` with every ``_UNSEEN`` character as its Python escape (``\\n``,
    ``\\u202e``): what a client sent (an alert's name, a host's) is logged as it is,
    and cannot make a line of its own. Also for other lines an operator reads
    in a terminal (``trioscope audit``'s columns)."""
    if _UNSEEN.search(message) is None:
        return message
    return _UNSEEN.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), message)


class HumanFormatter(logging.Formatter):
    """``2026-11-23T10:17:01.123Z INFO  trioscope.runtime: /root/topology started``
    (its control and invisible characters escaped: ``visible_text``) followed by the
    traceback, if any, on the next lines. Extra fields are left
    out: the message already says them in words. The one exception is the
    serving process (``--workers``), ``[worker 2]`` before the logger name:
    every worker writes to the same stream."""

    def format(self, record: logging.LogRecord) -> str:
        worker = getattr(record, "worker", None)
        tag = f"[worker {worker}] " if worker is not None else ""
        line = f"{_utc(record.created)} {record.levelname:<5} {tag}{record.name}: {visible_text(record.getMessage())}"
        if record.exc_info:
            # Each line of it marked: an exception's text may be a client's, and
            # a line of it must not read as a record of its own.
            lines = self.formatException(record.exc_info).splitlines()
            line += "\n" + "\n".join(f"  | {visible_text(part)}" for part in lines)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, the
    record's extra fields, and ``traceback`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except TypeError:  # a lone surrogate: a path of bytes that are not UTF-8, as Python reads it
            return orjson.dumps(writable_json(entry)).decode()


class WorkerTag(logging.Filter):
    """Marks every record with the serving process that wrote it (``worker``,
    1..N of ``--workers``): a JSON key, or ``[worker N]`` in human lines."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


def configure_logging(level: str, fmt: str, stream: IO[str] | None = None, *, worker: int | None = None) -> None:
    """Send every record at ``level`` or above to ``stream`` (stderr) as ``fmt``
    (``human`` or ``json``), replacing handlers installed earlier. ``worker``:
    this is serving process ``worker`` of several, and every line says so."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    if worker is not None:
        handler.addFilter(WorkerTag(worker))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
