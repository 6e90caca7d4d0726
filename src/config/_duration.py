"""Go-style durations (``90s``, ``1h30m``, ``500ms``) to and from float seconds.

Parsing goes through ``fractions.Fraction`` so ``0.1s`` or ``1.5h`` come out as the
nearest float to the exact value, and formatting works on whole nanoseconds as Go does,
so ``parse_duration(format_duration(x)) == x`` for any x with nanosecond resolution.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from ._exceptions import InvalidValue

_NANOSECOND = Fraction(1, 1_000_000_000)
_UNITS: dict[str, Fraction] = {
    "ns": _NANOSECOND,
    # Go accepts both micro signs (U+00B5 and U+03BC) and "us"; format_duration writes U+00B5.
    "us": Fraction(1, 1_000_000),
    "\u00b5s": Fraction(1, 1_000_000),
    "\u03bcs": Fraction(1, 1_000_000),
    "ms": Fraction(1, 1_000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
    # Not in Go; accepted because retention periods read naturally in days.
    "d": Fraction(86400),
}
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
# Longest units first so "ms" is not read as "m" followed by garbage.
_UNIT = "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True))
_PART = re.compile(f"({_NUMBER})({_UNIT})")
_DURATION = re.compile(f"(?:{_NUMBER}(?:{_UNIT}))+")
_BARE_NUMBER = re.compile(_NUMBER)

EXAMPLES = "use a number with a unit, like 90s, 5m or 1h"
MAX_TEXT = 64
"""Characters of a duration (``1h30m15.123456789s`` is 18): a longer one is no
duration anyone means, and its numbers would be read digit by digit (Python
refuses integers of more than 4,300 digits with a message about its internals)."""

_NS_PER_SECOND = 1_000_000_000
_NS_PER_MINUTE = 60 * _NS_PER_SECOND
_NS_PER_HOUR = 60 * _NS_PER_MINUTE


def parse_duration(text: str) -> float:
    """Parse a Go-style duration such as ``90s``, ``5m``, ``1h30m`` or ``500ms``.

    Units are ns, us (or µs), ms, s, m, h and, as a convenience, d (24 h). Parts may
    have decimals (``1.5h``). A bare number is rejected because its unit would be a
    guess; the message suggests one.

    Args:
      text: the duration, without surrounding spaces.

    Returns:
      The duration in seconds.

    Error handling:
      Raises ``ValueError`` whose message quotes the text and says what is allowed,
      e.g. ``"3600" has no unit; did you mean 3600s?``.
    """
    try:
        return duration_seconds(text)
    except InvalidValue as exc:
        raise InvalidValue(exc.reason, text=text) from None


def duration_seconds(text: str) -> float:
    """Like ``parse_duration``, but the ``InvalidValue`` carries only the reason,
    for messages that name the value and its source themselves.
    """
    if len(text) > MAX_TEXT:
        raise InvalidValue(f"is too long to be a duration ({len(text)} characters, at most {MAX_TEXT}); {EXAMPLES}")
    if _DURATION.fullmatch(text):
        total = sum((Fraction(number) * _UNITS[unit] for number, unit in _PART.findall(text)), Fraction(0))
        try:
            return float(total)
        except OverflowError:
            raise InvalidValue("is too large to be a duration") from None
    if _BARE_NUMBER.fullmatch(text):
        raise InvalidValue(f"has no unit; did you mean {text}s?")
    if text.startswith("-") and _DURATION.fullmatch(text[1:]):
        raise InvalidValue("is negative; durations must be zero or more")
    if not text:
        raise InvalidValue(f"is empty; {EXAMPLES}")
    raise InvalidValue(f"is not a duration; {EXAMPLES}")


def format_duration(seconds: float) -> str:
    """Render a duration as Go's ``time.Duration.String`` does.

    Examples: ``1h0m0s``, ``5m0s``, ``1m30s``, ``30s``, ``1.5s``, ``500ms``, ``0s``.

    Args:
      seconds: the duration; rounded to whole nanoseconds.

    Returns:
      The rendered duration, which ``parse_duration`` reads back (negative values
      render with a leading ``-``, which ``parse_duration`` rejects).
    """
    return _render(seconds, compact=False)


def format_duration_compact(seconds: float) -> str:
    """Like ``format_duration`` but without zero parts (``1h``, ``720h``, ``1m30s``),
    for help texts and the example file, where the short spelling reads better.
    """
    return _render(seconds, compact=True)


def _render(seconds: float, *, compact: bool) -> str:
    if not math.isfinite(seconds):
        raise ValueError(f"cannot format {seconds} as a duration")
    ns = round(seconds * _NS_PER_SECOND)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_decimal(ns, 1_000)}\u00b5s"
    if ns < _NS_PER_SECOND:
        return f"{sign}{_decimal(ns, 1_000_000)}ms"
    hours, rest = divmod(ns, _NS_PER_HOUR)
    minutes, rest = divmod(rest, _NS_PER_MINUTE)
    parts = [(hours, "h"), (minutes, "m"), (rest, "s")]
    if compact:
        shown = [(value, unit) for value, unit in parts if value]
    else:
        # Go drops leading zero parts only: 1h0m0s, 5m0s, 30s.
        while parts[0][0] == 0:
            parts.pop(0)
        shown = parts
    return sign + "".join(
        (_decimal(value, _NS_PER_SECOND) if unit == "s" else str(value)) + unit for value, unit in shown
    )


def _decimal(value: int, unit: int) -> str:
    """``value / unit`` in decimal without trailing zeros (1500, 1000 -> ``1.5``)."""
    whole, fraction = divmod(value, unit)
    if not fraction:
        return str(whole)
    width = len(str(unit)) - 1
    return f"{whole}.{str(fraction).rjust(width, '0').rstrip('0')}"
