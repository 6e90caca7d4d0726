"""The effective configuration as a table, for ``trioscope serve --print-config``."""

from __future__ import annotations

from ._keys import KEYS
from ._settings import Settings


def format_effective(settings: Settings) -> str:
    """Render every key's effective value and where it came from.

    Args:
      settings: the settings to show.

    Returns:
      One line per key, in table order, columns aligned: the dotted key, the value
      (durations as ``format_duration`` renders them) and its source, e.g.
      ``server.port            9090    flag --port``. No trailing newline.
    """
    rows = [
        (key.name, key.kind.format(settings.value(key.name)), settings.origin(key.name)) for key in KEYS
    ]
    key_width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    return "\n".join(
        f"{name.ljust(key_width)}  {value.ljust(value_width)}  {origin}" for name, value, origin in rows
    )
