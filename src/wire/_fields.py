"""Constrained field types of the wire models.

Each is a ``NewType`` with a check that the strict converter runs while
structuring, so a bad value is reported with its JSON path
(``$.processes_info.processes[3].pid``) instead of failing the whole object.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import chain
from typing import Any, NewType, overload

import attrs


class FieldError(ValueError):
    """A value that has the right JSON type but is not allowed; the message says
    what is allowed."""


@attrs.frozen
class IntRange:
    low: int
    high: int

    def check(self, value: int) -> int:
        if not self.low <= value <= self.high:
            raise FieldError(f"must be between {self.low} and {self.high}, got {value}")
        return value


@attrs.frozen
class FloatRange:
    low: float
    high: float

    def check(self, value: float) -> float:
        if not (math.isfinite(value) and self.low <= value <= self.high):
            raise FieldError(f"must be between {self.low:g} and {self.high:g}, got {value!r}")
        return value


@attrs.frozen
class TextRule:
    max_length: int
    pattern: re.Pattern[str] | None = None
    what: str = ""
    valid: Callable[[str], object] | None = None
    """A last look at what the pattern lets through (that a date of its shape
    exists): raises ``FieldError``. A rule with one is never checked inline."""

    def check(self, value: str) -> str:
        if len(value) > self.max_length:
            raise FieldError(f"must be at most {self.max_length} characters, got {len(value)}")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise FieldError(f"must be {self.what}, got {value[:80]!r}")
        if self.valid is not None:
            self.valid(value)
        return value


@attrs.frozen
class ListRule:
    item: Any
    max_items: int

    def check(self, value: list[Any]) -> list[Any]:
        if len(value) > self.max_items:
            raise FieldError(f"must hold at most {self.max_items} items, got {len(value)}")
        return value


@attrs.frozen
class MapRule:
    max_items: int
    max_key: int
    max_value: int

    def check(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > self.max_items:
            raise FieldError(f"must hold at most {self.max_items} entries, got {len(value)}")
        for key, item in value.items():
            if len(key) > self.max_key:
                raise FieldError(f"keys must be at most {self.max_key} characters, got {key[:40]!r}...")
            if len(item) > self.max_value:
                raise FieldError(f"value of {key[:80]!r} must be at most {self.max_value} characters")
        return value


@attrs.frozen
class JsonRule:
    """Free-form JSON (command parameters, results, system info): any value of
    ``kind`` (None: any), nested at most ``max_depth`` levels. The store encodes
    it inside its own documents, and JSON encoders have depth limits of their
    own (orjson: 254), so a deeper value must be refused here, naming its field."""

    max_depth: int
    kind: type | None = None

    def check(self, value: Any) -> Any:
        if self.kind is not None and type(value) is not self.kind:
            raise FieldError(f"must be {'an object' if self.kind is dict else 'a list'}, got {type(value).__name__}")
        if nesting_exceeds(value, self.max_depth):
            raise FieldError(f"must be nested at most {self.max_depth} levels deep")
        return value


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` has objects or lists nested more than ``limit`` deep.

    A level at a time, the next level's values gathered, typed and sorted by
    C-level passes (``chain``, ``map(type)``, ``filter``) rather than a Python
    step per value: 125,000 two-number lists took ~100 ms value by value (the
    event loop's, for an agent's WebSocket frame; the GIL's, in a worker
    thread), ~17 ms so. Iterative: a deep value must not exhaust the stack to be refused."""
    lists = [value] if type(value) is list else []
    dicts = [value] if type(value) is dict else []
    depth = 0
    while lists or dicts:
        depth += 1
        if depth > limit:
            return True
        below = list(chain(chain.from_iterable(lists), chain.from_iterable(map(dict.values, dicts))))
        kinds = set(map(type, below))
        lists = list(filter(_IS_LIST, below)) if list in kinds else []
        dicts = list(filter(_IS_DICT, below)) if dict in kinds else []
    return False


# JSON's values are exactly these types, never subclasses.
_IS_LIST = list.__instancecheck__
_IS_DICT = dict.__instancecheck__


Rule = IntRange | FloatRange | TextRule | ListRule | MapRule | JsonRule

#: NewType -> the rule its values must follow. The converter builds one hook per
#: entry: a fast path with the rule inlined, and ``rule.check`` for the message.
CHECKS: dict[Any, Rule] = {}


def constrained(name: str, base: Any, rule: Rule) -> Any:
    """A ``NewType`` of ``base`` whose values the strict converter checks against ``rule``."""
    new_type = NewType(name, base)  # type: ignore[misc]  # a NewType made at run time: the checker wants a literal name and a static base
    CHECKS[new_type] = rule
    return new_type


_MAX_INT = 2**63 - 1

Count = constrained("Count", int, IntRange(0, _MAX_INT))
"""A non-negative integer (bytes, packets, threads)."""
Port = constrained("Port", int, IntRange(0, 65535))
Pid = constrained("Pid", int, IntRange(1, 2**31 - 1))
ParentPid = constrained("ParentPid", int, IntRange(0, 2**31 - 1))
Cores = constrained("Cores", int, IntRange(0, 1_000_000))
NetworkNamespace = constrained("NetworkNamespace", int, IntRange(1, 2**64 - 1))
"""A Linux network namespace, by its inode (``/proc/<pid>/ns/net`` links to
``net:[<inode>]``): unique among a host's namespaces while it exists."""

Amount = constrained("Amount", float, FloatRange(0.0, 1e18))
"""A non-negative measurement (megabytes, bytes per second, CPU percent of one core)."""
Percent = constrained("Percent", float, FloatRange(0.0, 100.0))
"""A share of a whole, 0..100."""

Text = constrained("Text", str, TextRule(1024))
Name = constrained("Name", str, TextRule(256))
HostName = constrained("HostName", str, TextRule(
    256, re.compile("[^\x00-\x1f\x7f-\x9f\u2028\u2029"  # controls, line and paragraph separators
                    # Unicode's Default_Ignorable_Code_Point (zero-width, bidi
                    # controls, variation selectors, fillers, tags), and the
                    # interlinear annotation marks, which hide the text they annotate:
                    "\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
                    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb\U0001bca0-\U0001bca3"
                    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]*"),
    "a host name without control characters or invisible formatting (zero-width, bidi) characters"))
"""A host's name: it names the host's node (``host:<name>``), heads its views
and is shown as it is, so characters that show as nothing or reorder the text
around them (a right-to-left override) would let one host pass for another:
``db-prod`` followed by a variation selector or a combining grapheme joiner
was a second ``db-prod``."""
LongText = constrained("LongText", str, TextRule(16384))
Address = constrained("Address", str, TextRule(64))
"""An IP address as a probe writes it; unparseable addresses simply never match."""

IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
Identifier = constrained(
    "Identifier", str,
    TextRule(128, IDENTIFIER, "1-128 letters, digits or . _ : @ - starting with a letter or digit"),
)
"""Agent ids: they appear in URLs, actor paths and node ids."""

ContainerId = constrained(
    "ContainerId", str,
    TextRule(128, re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"), "a container id (letters, digits, _ . -)"),
)

RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"
)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_timestamp(value: str) -> datetime:
    """An RFC 3339 timestamp with a zone (``2025-10-13T00:00:00Z``, Go's nanoseconds
    allowed) as an aware UTC datetime."""
    if not RFC3339.fullmatch(value):
        raise FieldError(f"must be an RFC 3339 timestamp like 2025-10-13T00:00:00Z, got {value[:40]!r}")
    head, dot, rest = value.partition(".")
    if dot:  # Python takes at most 6 fractional digits; Go sends 9.
        digits = len(rest) - len(rest.lstrip("0123456789"))
        value = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z")).astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # month 13; year 9999 pushed past 9999 by its zone
        raise FieldError(f"is not a valid date and time: {exc}") from None
    if moment < EPOCH:  # an unset clock; and years before 1000 would not print as RFC 3339
        raise FieldError(f"must not be before 1970-01-01T00:00:00Z, got {value[:40]!r}")
    return moment


def format_timestamp(moment: datetime) -> str:
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def bounded_list(name: str, item: Any, max_items: int) -> Any:
    """A list type holding at most ``max_items`` items of ``item``."""
    return constrained(name, list[item], ListRule(item, max_items))


def bounded_map(name: str, max_items: int, max_key: int = 256, max_value: int = 4096) -> Any:
    """A string-to-string mapping (labels, metadata) with size limits."""
    return constrained(name, dict[str, str], MapRule(max_items, max_key, max_value))


_LATEST = datetime.max.replace(tzinfo=UTC)
_EARLIEST = datetime.min.replace(tzinfo=UTC)


def _utc(seconds: float) -> datetime:
    """``seconds`` (unix time) as an aware UTC datetime; a time outside the years
    1-9999 as the nearest end of that range instead of failing the request (a 500):
    a token's ``exp`` minted by something other than ``token create``, or a report
    published onto the stream by hand, can hold one. NaN counts as past the end."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):  # which one depends on the platform and the size
        return _EARLIEST if seconds < 0 else _LATEST


def rfc3339_millis(seconds: float | None) -> str | None:
    """``seconds`` (unix time) in RFC 3339, UTC, to the millisecond
    (``2025-01-02T03:04:05.678Z``), as the command and audit views show times;
    None for None and NaN."""
    if seconds is None or math.isnan(seconds):
        return None
    return _utc(seconds).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@overload
def rfc3339_seconds(seconds: float) -> str: ...
@overload
def rfc3339_seconds(seconds: None) -> None: ...
@overload
def rfc3339_seconds(seconds: float | None) -> str | None: ...


def rfc3339_seconds(seconds: float | None) -> str | None:
    """``seconds`` (unix time) in RFC 3339, UTC, to the second
    (``2025-10-13T00:00:00Z``, as the seed's examples), as the topology, the
    reports' and the agents' views show times; None for None."""
    if seconds is None:
        return None
    # isoformat, not strftime: glibc's %Y writes the year 1 as "1", not "0001".
    return _utc(seconds).isoformat(timespec="seconds").replace("+00:00", "Z")


MAX_COMMAND_TIMEOUT = 7 * 24 * 3600
"""Seconds a command may be given to run at most (a week): the server refuses
a longer ``timeout_seconds``, and a probe one it is handed."""
