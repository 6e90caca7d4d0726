"""Command-line flags: registering them on the CLI's parser and reading them back."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from ._examples import SERVER_EXAMPLE, example_file
from ._exceptions import quote_text
from ._keys import CONFIG_ENV, CONFIG_FLAG, KEYS, Key
from ._resolve import CONFIG
from ._source import FlagValue

DEST_PREFIX = "cfg__"
"""argparse dests of configuration flags start with this, e.g. ``cfg__server__port``,
so they cannot clash with the CLI's own options."""


def dest_for(name: str) -> str:
    """Returns:
    The argparse dest for a dotted key, or for ``"config"`` (``cfg__config``).
    """
    return DEST_PREFIX + name.replace(".", "__")


class _RecordFlag(argparse.Action):
    """Stores a ``FlagValue`` so problems can name the spelling the user typed."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        assert isinstance(values, str)
        setattr(namespace, self.dest, FlagValue(values, option_string or self.option_strings[0]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--config PATH`` and one flag per configuration key.

    Flags default to ``argparse.SUPPRESS``, so only flags the user typed appear in the
    parsed namespace (as ``FlagValue`` under ``cfg__...`` dests); nothing is parsed or
    checked here, so ``load_settings`` can report every bad value together. Create the
    parser with ``allow_abbrev=False``, or ``--port`` could be read as an abbreviation
    of some longer option.

    Args:
      parser: the parser to add a "configuration" argument group to.
    """
    paragraphs = [
        "Each setting comes from, in rising precedence: its default, the YAML file, "
        "the environment, these flags.",
        # Where it is on this machine: a wheel installs config/ elsewhere (``_examples``).
        f"An example YAML file documents every key with its default: {example_file(SERVER_EXAMPLE)}",
    ]
    # Listed so --help names every setting, also those no flag can set.
    paragraphs += [f"{key.name} (file or environment only): {describe(key)}" for key in KEYS if not key.flags]
    # Wrapped here because `serve` uses RawDescriptionHelpFormatter, which keeps lines as given.
    # A path is never cut (it is copied from here), at a hyphen (site-packages) or for its length.
    description = "\n".join(textwrap.fill(paragraph, width=76, break_on_hyphens=False, break_long_words=False)
                            for paragraph in paragraphs)
    group = parser.add_argument_group("configuration", description.replace("%", "%%"))
    group.add_argument(
        CONFIG_FLAG,
        dest=dest_for(CONFIG),
        metavar="PATH",
        action=_RecordFlag,
        default=argparse.SUPPRESS,
        help=f"read settings from this YAML file (env {CONFIG_ENV})",
    )
    for key in KEYS:
        if not key.flags:
            # Without option strings argparse would make this a positional argument.
            continue
        group.add_argument(
            *key.flags,
            dest=dest_for(key.name),
            metavar=key.kind.metavar,
            action=_RecordFlag,
            default=argparse.SUPPRESS,
            # argparse expands %-formats in help texts.
            help=describe(key).replace("%", "%%"),
        )


def describe(key: Key) -> str:
    """Returns:
    What the key does, its default, its limits and its environment variables, e.g.
    ``keep reports ... (default 1h; 1m..720h; env TRIOSCOPE_STORAGE_MAX_DATA_AGE, MAX_DATA_AGE)``.
    """
    facts = [f"default {key.kind.format_compact(key.default) or quote_text('')}"]
    limits = key.kind.limits()
    if limits is not None:
        facts.append(limits)
    facts.append(f"env {', '.join(key.env)}")
    return f"{key.help} ({'; '.join(facts)})"


def flag_values(flags: argparse.Namespace | Mapping[str, FlagValue | str]) -> Mapping[str, FlagValue | str]:
    """The configuration flags the user typed, by dotted key (and ``"config"``).

    Args:
      flags: the namespace from a parser set up by ``add_arguments`` (other options
        in it are ignored), or already a mapping by dotted key.

    Returns:
      Flag values by dotted key.
    """
    if not isinstance(flags, argparse.Namespace):
        return flags
    names = {dest_for(key.name): key.name for key in KEYS}
    names[dest_for(CONFIG)] = CONFIG
    return {names[dest]: value for dest, value in vars(flags).items() if dest in names}
