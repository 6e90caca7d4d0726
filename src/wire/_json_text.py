"""A JSON document made writable whatever text it holds: a lone surrogate
(``\\udcff``, how Python keeps a byte of the OS's that is not UTF-8) is no
text JSON can hold, and orjson refuses the whole document. The server's JSON
log lines (a path so named: the line was lost) and the probe's reports (a
process so named: the probe stopped) are written with such strings spelt out
instead."""

from __future__ import annotations

import re
from typing import Any

_NAMED_KEY = re.compile(r"[a-z][a-z0-9_]*")
"""A key of a document's own schema, named in a field's path; any other (a
label's, a variable's) is said as ``*``."""


def writable_json(value: Any, fields: set[str] | None = None, field: str = "") -> Any:
    """``value`` with each lone surrogate of its strings (keys too) written out
    (``\\udcff``), and what is no JSON value (a log record's extras) as its
    ``str``. ``fields``: given, each field that held one is added, by its path
    (``processes_info.processes[].name``)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            if fields is not None:
                fields.add(field or "the document")
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {writable_json(k, fields, field): writable_json(
                    v, fields, f"{field}.{k if isinstance(k, str) and _NAMED_KEY.fullmatch(k) else '*'}".lstrip("."))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [writable_json(v, fields, f"{field}[]") for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return writable_json(str(value), fields, field)
