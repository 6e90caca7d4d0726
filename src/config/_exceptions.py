"""Exceptions of trioscope.config."""

from __future__ import annotations

import json
from collections.abc import Iterable

import attrs

from ._source import Source


@attrs.frozen
class Problem:
    """One thing wrong with the configuration.

    ``str(problem)`` is the line shown to the user: ``KEY: MESSAGE``, or only the
    message for problems that belong to no key (an unreadable or malformed file).
    """

    key: str | None
    """The dotted key (or the unknown name as written); None for whole-file problems."""
    source: Source
    """Where the offending value or text came from."""
    message: str
    """The full explanation after ``KEY: ``, naming the value, its source and what is allowed."""

    def __str__(self) -> str:
        if self.key is None:
            return self.message
        return f"{self.key}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; carries every problem found, not only the first.

    ``str(error)`` has one line per problem, ready to print before exiting with status 2.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        # Passing the tuple keeps the exception picklable (rebuilt from self.args).
        super().__init__(self.problems)

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


class InvalidValue(ValueError):
    """A value was rejected by a parser.

    ``reason`` completes a sentence that starts with the value, e.g.
    ``is out of range; allowed 0..65535``. ``quote`` says whether the value should be
    shown quoted (it could not be parsed) or as written (it parsed but is not allowed).
    When ``text`` is given, ``str()`` is the whole sentence, for callers outside the
    configuration (``parse_duration`` used on query parameters).
    """

    def __init__(self, reason: str, *, text: str | None = None, quote: bool = True) -> None:
        self.reason = reason
        self.quote = quote
        super().__init__(reason if text is None else f"{quote_text(text)} {reason}")


SHOWN_VALUE = 300
"""Most characters of a bad value a problem shows."""


def shortened(written: str) -> str:
    """``written`` cut to ``SHOWN_VALUE`` characters, saying how long it was (a 5 MB --host was one 5 MB line)."""
    return f"{written[:SHOWN_VALUE]}... ({len(written)} characters)" if len(written) > SHOWN_VALUE else written


def quote_text(text: str) -> str:
    """Returns:
    ``text`` in double quotes with escapes, so empty and blank values stay visible.
    """
    return json.dumps(text, ensure_ascii=False)
