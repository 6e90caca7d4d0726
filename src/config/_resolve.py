"""Merging the layers into Settings: defaults < file < environment < flags (pure).

Nothing here reads files or the process environment; ``load_settings`` does that and
hands the text in, so tests drive this module with plain values.

Every value that is read is checked, even one a higher layer overrides: a broken
file or variable is reported now rather than on the day the override is removed.
Aliases are the exception: a lower-priority environment name (``APP_PORT``) is not
read at all when a higher one (``TRIOSCOPE_SERVER_PORT``) is set, since such generic
names may belong to other programs.

An environment variable set to the empty text is a value like any other, as
``--host ""`` and ``host: ""`` are: it clears a list, or is refused where a
value is required (it is not "unset", which would let a blank variable silently
fall back to the file or the default). Names with the ``TRIOSCOPE_`` prefix that
are no key's are problems with a suggestion, as unknown YAML keys are.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping

import attrs

from trioscope.wire import MemoryBudget, Report, service_links

from ._exceptions import ConfigError, InvalidValue, Problem, quote_text, shortened
from ._file import RawValue, read_config_text
from ._duration import format_duration_compact
from ._kinds import format_size, mask_passwords
from ._keys import CONFIG_ENV, CONFIG_FLAG, ENV_NAMES, ENV_PREFIX, KEYS, KEYS_BY_NAME, Key, is_other_env, suggest_env
from ._settings import Settings
from ._source import FlagValue, Source, SourceKind

CONFIG = "config"
"""Name of the ``--config`` path among flag values (beside the dotted key names)."""


@attrs.frozen(kw_only=True)
class ConfigFile:
    """A configuration file as ``load_settings`` found it: its text, or why it could
    not be read.
    """

    path: str
    text: str | None = None
    """The contents; None when the file could not be read."""
    error: str | None = None
    """Why the file could not be read, e.g. ``No such file or directory``."""
    named_by: Source | None = None
    """The flag or variable that named the file, for the "cannot read" message."""

    def __attrs_post_init__(self) -> None:
        if (self.text is None) == (self.error is None):
            raise ValueError("ConfigFile needs exactly one of text and error")


def locate_config_file(
    flag_values: Mapping[str, FlagValue | str], environ: Mapping[str, str]
) -> tuple[str, Source] | None:
    """Which YAML file to read: ``--config`` wins over ``TRIOSCOPE_CONFIG``.

    Args:
      flag_values: flag values by dotted key; the path is under ``"config"``.
      environ: the environment.

    Returns:
      The path and what named it, or None when no file is named (an empty
      ``TRIOSCOPE_CONFIG`` names none).
    """
    flag = flag_values.get(CONFIG)
    if flag is not None:
        flag = _as_flag(flag, CONFIG_FLAG)
        return flag.text, Source(kind=SourceKind.FLAG, name=flag.spelling)
    path = environ.get(CONFIG_ENV)
    if path:
        return path, Source(kind=SourceKind.ENV, name=CONFIG_ENV)
    return None


def resolve_settings(
    flag_values: Mapping[str, FlagValue | str],
    environ: Mapping[str, str],
    config_file: ConfigFile | None = None,
) -> Settings:
    """Merge defaults, the file, the environment and flags into checked Settings.

    Args:
      flag_values: flags the user typed, by dotted key (``"server.port"``), as
        ``FlagValue`` or plain text (then shown as the key's first flag, ``--port``).
        A ``"config"`` entry is allowed and ignored here.
      environ: environment variables; an empty value is read as the empty text, and
        a ``TRIOSCOPE_`` name that is no key's (nor one of ``OTHER_ENV``) is a problem.
      config_file: the YAML file's text, if a file was named.

    Returns:
      The Settings, each value tagged with its source.

    Error handling:
      Raises ``ConfigError`` carrying every problem found, in file-line order, then
      environment, then flags. Raises ``ValueError`` for a flag name that is not a key
      or for a key that has no flag (a programming error, not a user's).
    """
    unknown = set(flag_values) - set(KEYS_BY_NAME) - {CONFIG}
    if unknown:
        raise ValueError(f"not configuration keys: {', '.join(sorted(unknown))}")
    flagless = sorted(name for name in flag_values if name in KEYS_BY_NAME and not KEYS_BY_NAME[name].flags)
    if flagless:
        raise ValueError(f"keys without a command-line flag: {', '.join(flagless)}")
    values: dict[str, object] = {key.name: key.default for key in KEYS}
    origins: dict[str, Source] = {key.name: Source.default() for key in KEYS}
    problems: list[Problem] = []
    raw_values: list[tuple[Key, RawValue]] = []
    if config_file is not None:
        if config_file.text is None:
            problems.append(_unreadable(config_file))
        else:
            entries, file_problems = read_config_text(config_file.path, config_file.text)
            raw_values += entries
            problems += file_problems
    problems += _unknown_environ(environ)
    raw_values += _from_environ(environ)
    raw_values += _from_flags(flag_values)
    # Layers are in ascending precedence, so the last valid value of each key wins.
    for key, raw in raw_values:
        try:
            values[key.name] = key.kind.parse(raw.value)
            origins[key.name] = raw.source
        except InvalidValue as exc:
            problems.append(_invalid(key, raw, exc))
    problems += _combination_problems(values, origins)
    if problems:
        problems.sort(key=_problem_order)
        raise ConfigError(problems)
    return Settings.from_values(
        values, origins, config_file=None if config_file is None else config_file.path
    )


def _combination_problems(values: Mapping[str, object], origins: Mapping[str, Source]) -> list[Problem]:
    """Values that are fine alone but not together, named with where each came from."""
    problems = []
    cert, key = values["server.tls_cert"], values["server.tls_key"]
    if bool(cert) != bool(key):
        given, missing = ("server.tls_cert", "server.tls_key") if cert else ("server.tls_key", "server.tls_cert")
        problems.append(Problem(missing, origins[given], f"is needed with {given} (from {origins[given]}): "
                                "TLS takes both the certificate and its private key"))
    if values["server.cors_origins"] == ("*",) and values["server.cors_allow_credentials"]:
        source = origins["server.cors_allow_credentials"]
        problems.append(Problem("server.cors_origins", origins["server.cors_origins"],
                                f"* (from {origins['server.cors_origins']}) cannot go with "
                                f"server.cors_allow_credentials true (from {source}): browsers refuse credentials "
                                "for any origin, and it would let every site act as the signed-in user; "
                                "list the origins instead"))
    problems += _body_budget_problems(values, origins)
    problem = _history_problem(values, origins)
    if problem is not None:
        problems.append(problem)
    return problems


def _body_budget_problems(values: Mapping[str, object], origins: Mapping[str, Source]) -> list[Problem]:
    """A budget of request bodies being received below ``server.max_body_size``:
    a body of the largest size accepted could never be received whole."""
    largest = values["server.max_body_size"]
    assert isinstance(largest, int)
    problems = []
    for name, whose in (("limits.body_bytes_per_address", "from one client address"),
                        ("limits.body_bytes_total", "at all")):
        budget = values[name]
        assert isinstance(budget, int)
        if budget < largest:
            problems.append(Problem(name, origins[name], f"{format_size(budget)} (from {origins[name]}) is below "
                                    f"server.max_body_size {format_size(largest)} (from "
                                    f"{origins['server.max_body_size']}): a body of the largest size accepted could "
                                    f"never be received {whose}; raise it or lower server.max_body_size"))
    return problems


_BARE_HOST = Report(agent_id="bare-host", timestamp=datetime.datetime.fromtimestamp(0, datetime.UTC))
"""A report of a host and nothing else: the least any agent's report holds."""


def _host_estimate(history: float) -> int:
    """What ``agents.memory_budget``'s check (``MemoryBudget``) estimates a bare
    host takes with ``history`` seconds of metric history: its agent and the
    history of its host's metrics."""
    return MemoryBudget(limit=0, history=history, process_history=history).footprint(_BARE_HOST, 0).bytes


def _longest_history(budget: int, beyond: int) -> int:
    """The most seconds of history (below ``beyond``, which does not fit) with
    which a bare host fits ``budget``: the estimate grows with the history."""
    fits, too_long = 0, beyond
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if _host_estimate(middle) <= budget:
            fits = middle
        else:
            too_long = middle
    return fits


def _history_problem(values: Mapping[str, object], origins: Mapping[str, Source]) -> Problem | None:
    """``agents.memory_budget`` too small for one host's metric history at
    ``storage.max_data_age``: every report, however small, would be refused
    (413 memory_budget_exceeded) by a server that started as if all were well."""
    budget, age = values["agents.memory_budget"], values["storage.max_data_age"]
    assert isinstance(budget, int) and isinstance(age, float | int)
    needed = _host_estimate(age)
    if needed <= budget:
        return None
    longest = _longest_history(budget, int(age))
    unit = 3600 if longest >= 3600 else 60
    longest = longest // unit * unit  # said in whole hours (or minutes)
    mib = 1024**2
    budget_needed = -(-needed // mib) * mib
    return Problem("agents.memory_budget", origins["agents.memory_budget"],
                   f"{format_size(budget)} (from {origins['agents.memory_budget']}) cannot hold one host's metric "
                   f"history at storage.max_data_age {format_duration_compact(age)} (from "
                   f"{origins['storage.max_data_age']}): a host that reports nothing else is estimated at "
                   f"{needed / mib:.1f} MiB, so every report would get 413 memory_budget_exceeded; raise "
                   f"agents.memory_budget to at least {format_size(budget_needed)} (hosts with containers and "
                   f"processes need more) or lower storage.max_data_age to at most "
                   f"{format_duration_compact(longest) if longest else 'what fits'}")


def _from_environ(environ: Mapping[str, str]) -> Iterator[tuple[Key, RawValue]]:
    for key in KEYS:
        for name in key.env:
            text = environ.get(name)
            if text is not None:
                # Surrounding spaces are a quoting accident, not part of the value.
                yield key, RawValue(text.strip(), text.strip(), Source(kind=SourceKind.ENV, name=name))
                break


def _unknown_environ(environ: Mapping[str, str]) -> list[Problem]:
    problems = []
    links = service_links(environ, ENV_PREFIX)  # a Kubernetes Service named trioscope...
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in ENV_NAMES or is_other_env(name) or name in links:
            continue
        suggestion = suggest_env(name)
        hint = f" (did you mean {suggestion}?)" if suggestion else "; no setting has this name"
        problems.append(Problem(name, Source(kind=SourceKind.ENV, name=name), f"unknown environment variable{hint}"))
    return problems


def _from_flags(flag_values: Mapping[str, FlagValue | str]) -> Iterator[tuple[Key, RawValue]]:
    for key in KEYS:
        if key.name in flag_values:
            flag = _as_flag(flag_values[key.name], key.flags[0])
            text = flag.text.strip()
            yield key, RawValue(text, text, Source(kind=SourceKind.FLAG, name=flag.spelling))


def _as_flag(value: FlagValue | str, spelling: str) -> FlagValue:
    return value if isinstance(value, FlagValue) else FlagValue(value, spelling)


def _invalid(key: Key, raw: RawValue, error: InvalidValue) -> Problem:
    # Text that failed to parse is quoted so empty or odd values stay visible; a value
    # that parsed but is not allowed (out of range) is shown as written. Secrets are
    # never shown, nor a password in a URL (a database's, the bus's): problems go
    # to terminals and logs.
    written = shortened(mask_passwords(raw.written))
    if key.secret:
        shown = "the value"
    elif error.quote and isinstance(raw.value, str):
        shown = quote_text(written)
    else:
        shown = written
    return Problem(key.name, raw.source, f"{shown} from {raw.source} {error.reason}")


def _unreadable(config_file: ConfigFile) -> Problem:
    named_by = "" if config_file.named_by is None else f" (named by {config_file.named_by})"
    return Problem(
        None,
        Source(kind=SourceKind.FILE, name=config_file.path),
        f"cannot read config file {config_file.path}{named_by}: {config_file.error}",
    )


_LAYER_ORDER = {SourceKind.FILE: 0, SourceKind.ENV: 1, SourceKind.FLAG: 2, SourceKind.DEFAULT: 3}


def _problem_order(problem: Problem) -> tuple[int, int]:
    return _LAYER_ORDER[problem.source.kind], problem.source.line or 0
