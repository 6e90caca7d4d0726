"""Query-string arguments, read one way by every route: a malformed one is a
400 ``invalid_query`` naming the argument, never a 500 and never quietly
taken as its default."""

from __future__ import annotations

from datetime import datetime

from quart import request

from trioscope.wire import parse_timestamp

from ._errors import ApiError


def date_argument(name: str, *, end: bool) -> float | None:
    """Query parameter ``name``: a date (the whole day; ``end``: up to its end) or an RFC 3339 time."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        if len(raw) == 10:  # a date: the whole day (to_date includes its day)
            day = datetime.fromisoformat(raw + "T00:00:00+00:00").timestamp()
            return day + 86400 if end else day
        return parse_timestamp(raw).timestamp()
    except ValueError as exc:
        # Why, where the parser says it of what was written (0001-01-01T00:00:00Z is
        # RFC 3339, and before 1970); not of the time a date was made into.
        why = f" ({exc})" if len(raw) != 10 else ""
        raise ApiError(400, "invalid_query", f"{name}: must be a date (2024-01-31) or an RFC 3339 time{why}",
                       details={"field": name}) from None


def boolean_argument(name: str) -> bool:
    """Query parameter ``name``: ``true`` or ``false`` (absent: false)."""
    raw = request.args.get(name)
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise ApiError(400, "invalid_query", f"{name}: must be true or false", details={"field": name})


def integer_argument(name: str, default: int, low: int, high: int, unit: str = "") -> int:
    """Query parameter ``name``: decimal ASCII digits (not "²", which ``isdigit``
    takes and ``int`` refuses; not thousands of them, which ``int`` refuses too)."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18) or not low <= int(raw) <= high:
        raise ApiError(400, "invalid_query", f"{name}: must be an integer from {low} to {high}{unit}",
                       details={"field": name})
    return int(raw)
