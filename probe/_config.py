"""The probe's YAML file (``--config`` or ``TRIOSCOPE_PROBE_CONFIG``) and its
``TRIOSCOPE_PROBE_*`` environment: the same settings as the flags, under the
flags' names with underscores. Precedence: defaults < file < environment <
flags. Unknown keys and variables, keys set twice and wrong types stop the
probe with one line each naming the file and line (exit 2), as the server's
configuration does (``trioscope.config``, which the probe may not import).

The file is composed into YAML nodes rather than loaded into a dict: nodes keep
their lines, and a key set twice, which ``yaml.safe_load`` silently resolves to
the last one, is seen. A hostile file is one line too, as the server's is: a file
larger than ``MAX_FILE_BYTES`` is not read, bytes that are not UTF-8 are named,
nesting deeper than ``MAX_DEPTH`` and numbers longer than ``MAX_NUMBER`` are
refused before Python's recursion and integer limits raise."""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from trioscope.wire import service_links

KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "server": ((str,), "the server's base URL"),
    "interval": ((str, int, float), "a duration (15s, 1m) or a number of seconds"),
    "agent_id": ((str,), "text"),
    "buffer": ((int,), "a whole number"),
    "docker_host": ((str,), "text (a Docker API address)"),
    "env_values": ((bool,), "true or false"),
    "deployment_hash": ((str,), "text"),
    "enrollment_token": ((str,), "text"),
    "enrollment_token_file": ((str,), "a path"),
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
    "TRIOSCOPE_PROBE_ENROLLMENT_TOKEN": "enrollment_token",
    "TRIOSCOPE_PROBE_ENROLLMENT_TOKEN_FILE": "enrollment_token_file", "TRIOSCOPE_PROBE_STATE_DIR": "state_dir",
    "TRIOSCOPE_PROBE_ALLOW": "allow", "TRIOSCOPE_PROBE_LOG_LEVEL": "log_level",
    "TRIOSCOPE_PROBE_LOG_FORMAT": "log_format", "TRIOSCOPE_PROBE_CA_FILE": "ca_file",
}
"""The environment variable of each setting that has one, and its file key."""
CONFIG_ENV = "TRIOSCOPE_PROBE_CONFIG"
MAX_FILE_BYTES = 1024 * 1024
"""Most bytes of a file read: the probe's settings take a few hundred; a larger
file is no configuration, and would be read whole into memory."""
MAX_DEPTH = 32
"""Most levels of nesting a file may have, the document itself counted, as the
server's configuration allows (``trioscope.config``): a valid file needs three
(the settings, allow's list, its items); composing and building recurse a few
frames per level, so this stays far from Python's recursion limit."""
MAX_NUMBER = 64
"""Most characters of a number read: no setting needs more (buffer is at most
10000, an interval 3600 seconds), and int() refuses more than 4,300 digits, a
float holds none of more than 308."""
SERVER_SECTIONS = {"server", "storage", "store", "bus", "metrics", "auth", "agents", "commands", "tenants", "limits",
                   "websocket", "log", "alerts"}
"""The sections of ``trioscope serve``'s file: one of them holding a mapping says
that file was given to the probe, and the message says so."""
_KEY_LIKE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""What an unknown key must look like to be shown (a mistyped key does)."""
EXAMPLE = "probe.example.yaml"


def example_file() -> str:
    """Where the probe's example file (every key documented) is on this
    machine: installed with trioscope (a wheel puts ``config/`` in
    ``trioscope/examples``, beside this package), or a source tree's
    ``config/``; failing both, where to get it. Found here, not through
    ``trioscope.config`` (which the probe may not import)."""
    root = Path(__file__).resolve().parent.parent
    for directory in (root / "trioscope" / "examples", root / "config"):
        if (directory / EXAMPLE).is_file():
            return str(directory / EXAMPLE)
    return f"config/{EXAMPLE} in trioscope's source distribution"


def _server_file() -> str:
    """What a key of a server's section adds to its line: the file is likely the server's."""
    return f" (is this trioscope serve's configuration? the probe's file has flat keys: see {example_file()})"


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
    links = service_links(environ, ENV_PREFIX)  # a Kubernetes Service named trioscope-probe...
    problems = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known and name not in links:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]}?)" if close else f"; the probe's are {', '.join(sorted(known))}"
            problems.append(f"unknown environment variable {name}{hint}")
    return problems


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing nodes nested deeper than ``MAX_DEPTH``, as
    composed and as built (aliases nest a value without composing it deep), and
    integers written longer than ``MAX_NUMBER``."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # the stubs leave the parser untyped
        with self._level(event.start_mark):
            return super().compose_node(parent, index)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        with self._level(node.start_mark):
            return super().construct_object(node, deep)

    @contextlib.contextmanager
    def _level(self, mark: yaml.Mark) -> Iterator[None]:
        """One level deeper while composing or building the node at ``mark``."""
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(None, None, f"nested too deep (more than {MAX_DEPTH} levels)", mark)
            yield
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if len(node.value) > MAX_NUMBER:
            # Before int(), which raises past 4,300 digits; past 308, an interval's float would overflow.
            raise ValueError(f"a number of more than {MAX_NUMBER} characters")
        return super().construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def load_file(path: str) -> FileValues:
    """The file's settings, checked; intervals given as numbers are seconds.

    Raises:
        ConfigFileError: one line for each problem (the file cannot be read, is
            larger than ``MAX_FILE_BYTES``, not UTF-8, not YAML, nested deeper than
            ``MAX_DEPTH``, has unknown keys, keys set twice or values of the wrong type).
    """
    loader = _Loader(_text(path))
    try:
        return _read(path, loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = path if mark is None else f"{path}:{mark.line + 1}"
        detail = " ".join(str(exc.problem or exc.context or "malformed").split())
        raise ConfigFileError([f"{where}: invalid YAML: {detail}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigFileError([f"{path}: invalid YAML: {' '.join(str(exc).split())}"]) from None
    except RecursionError:
        # Only if Python's recursion limit is set below what MAX_DEPTH needs.
        raise ConfigFileError([f"{path}: invalid YAML: nested too deep"]) from None
    finally:
        loader.dispose()


def _text(path: str) -> str:
    """The file's text, at most ``MAX_FILE_BYTES`` of it read.

    Raises:
        ConfigFileError: it cannot be read, is larger, or is not UTF-8.
    """
    try:
        with Path(path).expanduser().open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)  # one more byte tells a larger file, never read whole
    except OSError as exc:
        raise ConfigFileError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigFileError([f"{path}: larger than {MAX_FILE_BYTES // 1024 // 1024} MiB, the most read"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None


def _read(path: str, loader: _Loader) -> FileValues:
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
        if expected is None and not _KEY_LIKE.fullmatch(key):
            # Not echoed: some other file's text (``--config /etc/shadow``: password hashes).
            problems.append(f"{where}: not a key of the probe's configuration (is it a probe configuration file?)")
            continue
        if expected is None:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(sorted(KEYS))}"
            problems.append(f"{where}: unknown key {key!r}{_server_file() if server_section else hint}")
            continue
        try:
            value = loader.construct_object(value_node, deep=True)
        except ValueError as exc:
            # A scalar its tag refuses (a number longer than MAX_NUMBER, the date 2023-02-30): that value is wrong.
            problems.append(f"{where}: {key}: cannot be read: {exc}")
            continue
        types, wanted = expected
        if isinstance(value, bool) != (bool in types) or not isinstance(value, types):
            problems.append(f"{where}: {key}: expected {wanted}, got {_kind(value, secret=key in SECRET_KEYS)}"
                            f"{_server_file() if server_section else ''}")
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
