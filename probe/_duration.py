"""Durations as the probe's ``--interval`` takes them: ``15s``, ``1m``, ``1m30s``,
``1.5m``, ``500ms`` (Go's spelling, as the server's flags take them), or a bare
number of seconds (``15``, ``2.5``): the probe has one duration, and seconds
are what its example file and every interval before it meant.

The probe's own, not the server's configuration parser: the probe imports
nothing of the server but the wire (``tests/probe/test_independence.py``), and
an interval needs only these units (it is between 1 s and 1 h)."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|s|m|h)")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a sequence of numbers with units (ms, s, m, h), or a
    bare number of seconds.

    Raises:
        ValueError: quoting the text and saying what is allowed.
    """
    text = text.strip()
    if _NUMBER.fullmatch(text):
        return float(text)
    parts = _PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{text!r} is not a duration; use a number of seconds, or with a unit (ms, s, m, h), "
                         "like 15s, 1m or 1m30s")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)
