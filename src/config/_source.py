"""Where a configuration value came from."""

from __future__ import annotations

import enum

import attrs


class SourceKind(enum.Enum):
    """The layers a value can come from, lowest precedence first."""

    DEFAULT = "default"
    FILE = "file"
    ENV = "env"
    FLAG = "flag"


@attrs.frozen(kw_only=True)
class Source:
    """The origin of one value, rendered as ``default``, ``file PATH:LINE``,
    ``env NAME`` or ``flag --name``.
    """

    kind: SourceKind
    """Which layer the value came from."""
    name: str | None = None
    """The file path, the environment variable or the flag as typed; None for defaults."""
    line: int | None = None
    """1-based line in the file, for file sources whose line is known."""

    @classmethod
    def default(cls) -> Source:
        """Returns:
        The source of built-in defaults.
        """
        return cls(kind=SourceKind.DEFAULT)

    @property
    def location(self) -> str:
        """``PATH:LINE`` for file sources, otherwise the name (or ``default``)."""
        if self.kind is SourceKind.FILE and self.line is not None:
            return f"{self.name}:{self.line}"
        return self.name or self.kind.value

    def __str__(self) -> str:
        if self.kind is SourceKind.DEFAULT:
            return "default"
        return f"{self.kind.value} {self.location}"


@attrs.frozen
class FlagValue:
    """A command-line flag's text together with the spelling the user typed,
    so problems can say ``flag -port`` when that is what was written.
    """

    text: str
    """The flag's argument, unparsed."""
    spelling: str
    """The option string as typed, e.g. ``--port`` or ``-port``."""
