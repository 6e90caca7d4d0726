"""Loading settings for the running server: the thin I/O around ``resolve_settings``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from ._arguments import flag_values
from ._kinds import format_size
from ._resolve import ConfigFile, locate_config_file, resolve_settings
from ._settings import Settings
from ._source import FlagValue, Source


def load_settings(
    flags: argparse.Namespace | Mapping[str, FlagValue | str],
    environ: Mapping[str, str],
) -> Settings:
    """Read the YAML file named by ``--config`` or ``TRIOSCOPE_CONFIG`` (the flag wins)
    and merge it with defaults, the environment and flags.

    Args:
      flags: the namespace parsed by a parser set up with ``add_arguments``, or a
        mapping of flag text by dotted key (``{"server.port": "9090"}``), with the file
        path under ``"config"``.
      environ: the environment, usually ``os.environ``.

    Returns:
      The checked Settings.

    Error handling:
      Raises ``ConfigError`` listing every problem, including an unreadable file.
    """
    values = flag_values(flags)
    located = locate_config_file(values, environ)
    config_file = None if located is None else _read(*located)
    return resolve_settings(values, environ, config_file)


MAX_FILE_BYTES = 1024 * 1024
"""A configuration file's size at most (every key of the example file set is
a few KiB): a 9 MB file took 25 s and 877 MB of memory to be refused."""


def _read(path: str, named_by: Source) -> ConfigFile:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return ConfigFile(path=path, error=exc.strerror or str(exc), named_by=named_by)
    if len(data) > MAX_FILE_BYTES:
        return ConfigFile(path=path, error=f"larger than {format_size(MAX_FILE_BYTES)}, the most a configuration "
                          "file may hold", named_by=named_by)
    try:
        return ConfigFile(path=path, text=data.decode("utf-8"), named_by=named_by)
    except UnicodeDecodeError as exc:
        return ConfigFile(path=path, error=f"not UTF-8 text (byte {exc.start})", named_by=named_by)
