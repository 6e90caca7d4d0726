"""What the metrics domain refuses, one type per situation. The HTTP edge
maps each to a status and error code in one place."""

from __future__ import annotations


class BadWrite(ValueError):
    """A write body that cannot be read: the line (1-based) or JSON path it is at."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class WriteLimitExceeded(Exception):
    """A write beyond a configured limit. ``status`` is 413 for a request too big
    (points, label sizes) and 429 for a quota (series held)."""

    def __init__(self, status: int, code: str, message: str, *, config_key: str, limit: int,
                 where: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.config_key = config_key
        self.limit = limit
        self.where = where


class BadQuery(ValueError):
    """A query or its parameters cannot be parsed (Prometheus: 400 ``bad_data``)."""


class UnsupportedQuery(ValueError):
    """A PromQL construct the embedded engine does not evaluate (422, naming it)."""


class QueryTooExpensive(Exception):
    """Evaluating the query would touch more samples than ``metrics.max_query_samples`` (422)."""


class QueryTimedOut(Exception):
    """Evaluation passed ``metrics.query_timeout`` (Prometheus: 503 ``timeout``)."""


class QueryExecutionError(Exception):
    """A valid query whose result Prometheus refuses, e.g. two series with one
    label set, or many-to-one matching without ``group_left`` (422 ``execution``,
    the message as Prometheus words it)."""
