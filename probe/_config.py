"""The probe's YAML file (``--config`` or ``TRIOSCOPE_PROBE_CONFIG``): the same
settings as the flags, under the flags' names with underscores. Precedence:
defaults < file < environment < flags. Unknown keys and wrong types stop the
probe with one line each (exit 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

KEYS: dict[str, type | tuple[type, ...]] = {
    "server": str, "interval": (str, int), "agent_id": str, "buffer": int, "docker_host": str,
    "env_values": bool, "deployment_hash": str, "enrollment_token": str, "state_dir": str,
    "allow": (list, str), "processes": bool, "connections": bool, "log_level": str, "ca_file": str,
}


class ConfigFileError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def load_file(path: str) -> dict[str, Any]:
    """The file's settings, checked; intervals given as numbers are seconds."""
    try:
        document = yaml.safe_load(Path(path).expanduser().read_text())
    except OSError as exc:
        raise ConfigFileError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigFileError([f"{path}: not valid YAML: {exc}"]) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigFileError([f"{path}: must be a mapping of settings"])
    problems = []
    values: dict[str, Any] = {}
    for key, value in document.items():
        expected = KEYS.get(str(key))
        if expected is None:
            problems.append(f"{path}: unknown key {key!r}; known: {', '.join(sorted(KEYS))}")
        elif isinstance(value, bool) and expected is not bool:
            problems.append(f"{path}: {key}: is a boolean")
        elif not isinstance(value, expected):
            problems.append(f"{path}: {key}: has the wrong type ({type(value).__name__})")
        elif key == "allow" and isinstance(value, list) and not all(isinstance(v, str) for v in value):
            problems.append(f"{path}: allow: must be a list of command types")
        else:
            values[str(key)] = value
    if problems:
        raise ConfigFileError(problems)
    if isinstance(values.get("interval"), int):
        values["interval"] = f"{values['interval']}s"
    if isinstance(values.get("allow"), list):
        values["allow"] = ",".join(values["allow"])
    return values
