"""The probe's YAML file (``--config`` or ``TRIOSCOPE_PROBE_CONFIG``) and its
``TRIOSCOPE_PROBE_*`` environment: the same settings as the flags, under the
flags' names with underscores. Precedence: defaults < file < environment <
flags. Unknown keys and variables, keys set twice and wrong types stop the
probe with one line each naming the file and line (exit 2), as the server's
configuration does (``trioscope.config``, which the probe may not import).

The file is composed into YAML nodes rather than loaded into a dict: nodes keep
their lines, and a key set twice, which ``yaml.safe_load`` silently resolves to
the last one, is seen."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "server": ((str,), "the server's base URL"),
    "interval": ((str, int, float), "a duration (15s, 1m) or a number of seconds"),
    "agent_id": ((str,), "text"),
    "buffer": ((int,), "a whole number"),
    "docker_host": ((str,), "text (a Docker API address)"),
    "env_values": ((bool,), "true or false"),
    "deployment_hash": ((str,), "text"),
    "enrollment_token": ((str,), "text"),
    "state_dir": ((str,), "a path"),
    "allow": ((list, str), "a list of command types"),
    "processes": ((bool,), "true or false"),
    "connections": ((bool,), "true or false"),
    "log_level": ((str,), "debug, info, warning or error"),
    "log_format": ((str,), "human or json"),
    "ca_file": ((str,), "a path"),
}
"""Each key's accepted YAML types and, for messages, what is expected."""
SECRET_KEYS = {"enrollment_token"}
"""Keys whose values are never repeated in a message."""

ENV_PREFIX = "TRIOSCOPE_PROBE_"
FILE_KEY_OF_ENV = {
    "TRIOSCOPE_PROBE_SERVER": "server", "TRIOSCOPE_PROBE_INTERVAL": "interval", "TRIOSCOPE_PROBE_AGENT_ID": "agent_id",
    "TRIOSCOPE_PROBE_BUFFER": "buffer", "DOCKER_HOST": "docker_host", "TRIOSCOPE_PROBE_DEPLOYMENT": "deployment_hash",
    "TRIOSCOPE_PROBE_ENROLLMENT_TOKEN": "enrollment_token", "TRIOSCOPE_PROBE_STATE_DIR": "state_dir",
    "TRIOSCOPE_PROBE_ALLOW": "allow", "TRIOSCOPE_PROBE_LOG_LEVEL": "log_level",
    "TRIOSCOPE_PROBE_LOG_FORMAT": "log_format", "TRIOSCOPE_PROBE_CA_FILE": "ca_file",
}
"""The environment variable of each setting that has one, and its file key."""
CONFIG_ENV = "TRIOSCOPE_PROBE_CONFIG"
SERVER_SECTIONS = {"server", "storage", "store", "bus", "metrics", "auth", "agents", "commands", "tenants", "limits",
                   "websocket", "log", "alerts"}
"""The sections of ``trioscope serve``'s file: one of them holding a mapping says
that file was given to the probe, and the message says so."""
_SERVER_FILE = " (is this trioscope serve's configuration? the probe's file has flat keys: see config/probe.example.yaml)"


class ConfigFileError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class FileValues(dict[str, Any]):
    """The file's settings, and the line each was set on (for messages)."""

    def __init__(self, values: Mapping[str, Any] | None = None, lines: Mapping[str, int] | None = None) -> None:
        super().__init__(values or {})
        self.lines = dict(lines or {})


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """A problem for each ``TRIOSCOPE_PROBE_*`` variable that is no setting,
    with the one it most likely meant: a misspelt variable would otherwise
    leave its setting silently at the default."""
    known = [*FILE_KEY_OF_ENV, CONFIG_ENV]
    problems = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]}?)" if close else f"; the probe's are {', '.join(sorted(known))}"
            problems.append(f"unknown environment variable {name}{hint}")
    return problems


def load_file(path: str) -> FileValues:
    """The file's settings, checked; intervals given as numbers are seconds.

    Raises:
        ConfigFileError: one line for each problem (the file cannot be read, is not
            YAML, has unknown keys, keys set twice or values of the wrong type).
    """
    try:
        text = Path(path).expanduser().read_text()
    except OSError as exc:
        raise ConfigFileError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    loader = yaml.SafeLoader(text)
    try:
        return _read(path, loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = path if mark is None else f"{path}:{mark.line + 1}"
        detail = " ".join(str(exc.problem or exc.context or "malformed").split())
        raise ConfigFileError([f"{where}: invalid YAML: {detail}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigFileError([f"{path}: invalid YAML: {' '.join(str(exc).split())}"]) from None
    finally:
        loader.dispose()


def _read(path: str, loader: yaml.SafeLoader) -> FileValues:
    root = loader.get_single_node()
    if root is None:
        return FileValues()  # empty, or only comments
    if not isinstance(root, yaml.MappingNode):
        raise ConfigFileError([f"{path}:{root.start_mark.line + 1}: expected settings (key: value) at the top level"])
    problems: list[str] = []
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in root.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
        line = key_node.start_mark.line + 1
        where = f"{path}:{line}"
        if key in lines:
            problems.append(f"{where}: {key} set again; first set on line {lines[key]}")
            continue
        lines[key] = line
        server_section = key in SERVER_SECTIONS and isinstance(value_node, yaml.MappingNode)
        expected = KEYS.get(key)
        if expected is None:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(sorted(KEYS))}"
            problems.append(f"{where}: unknown key {key!r}{_SERVER_FILE if server_section else hint}")
            continue
        value = loader.construct_object(value_node, deep=True)
        types, wanted = expected
        if isinstance(value, bool) != (bool in types) or not isinstance(value, types):
            problems.append(f"{where}: {key}: expected {wanted}, got {_kind(value, secret=key in SECRET_KEYS)}"
                            f"{_SERVER_FILE if server_section else ''}")
        elif key == "allow" and isinstance(value, list) and not all(isinstance(v, str) for v in value):
            problems.append(f"{where}: allow: expected {wanted}, got a list with other values")
        else:
            values[key] = value
    if problems:
        raise ConfigFileError(problems)
    if isinstance(values.get("interval"), int | float):
        values["interval"] = f"{values['interval']:g}s"
    if isinstance(values.get("allow"), list):
        values["allow"] = ",".join(values["allow"])
    return FileValues(values, lines)


def _kind(value: object, *, secret: bool) -> str:
    """What a YAML value is, in words: ``the text '5'``, ``a mapping``."""
    if value is None:
        return "no value"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "text" if secret else f"the text {value[:40]!r}"
    if isinstance(value, int | float):
        return "a number" if secret else f"the number {value}"
    return f"a {type(value).__name__}"
