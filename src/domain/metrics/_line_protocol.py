"""InfluxDB line protocol write bodies, read into samples.

Each line is parsed by ``line-protocol-parser`` (a maintained C extension that
implements the spec's escaping of measurement, tag and field names, quoted
string fields and the ``i``/``u``/float/bool field types); here are the parts
the spec leaves to the server: lines and comments, the ``precision`` of
timestamps, and how a point becomes Prometheus samples. As VictoriaMetrics'
Influx importer does, field ``f`` of measurement ``m`` becomes metric
``m_f``, tags become labels, booleans are 1 or 0, and string fields are no
number, so they are skipped. Two tags that become one label (``a.b`` and
``a_b``), two fields that become one metric, or a tag the server's labels push
onto another (``tenant`` with ``exported_tenant``) refuse the line: one value
would be lost without a word.
"""

from __future__ import annotations

import math

from line_protocol_parser import LineFormatError, parse_line  # type: ignore[import-untyped]  # ships no type hints

from ._exceptions import BadWrite
from ._samples import (
    SERVER_LABELS,
    Sample,
    WriteLimits,
    check_point_count,
    label_name,
    metric_name,
    series_of,
    writer_labels,
)

PRECISIONS: dict[str, float] = {
    "ns": 1e-9, "n": 1e-9,
    "us": 1e-6, "u": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
}
"""Seconds per timestamp unit, by ``precision`` (InfluxDB v2 spellings and v1's ``n``/``u``)."""


def parse_line_protocol(body: bytes, *, precision: str, now: float, latest: float, tenant: str,
                        deployment_hash: str, limits: WriteLimits) -> list[Sample]:
    """The samples of a line-protocol body.

    Args:
        body: The request body (UTF-8).
        precision: Unit of the timestamps (a key of ``PRECISIONS``).
        now: Unix seconds given to points written without a timestamp.
        latest: The latest timestamp accepted (now plus the allowed clock skew).
        tenant, deployment_hash: The writer's, set as labels it cannot override.
        limits: Bounds on the request.

    Raises:
        BadWrite: naming the (1-based) line that cannot be read, and why.
        WriteLimitExceeded: too many points (413) or labels too long (413).
    """
    unit = PRECISIONS[precision]
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        line = body[:exc.start].count(b"\n") + 1
        raise BadWrite(f"line {line}", "is not UTF-8") from None
    samples: list[Sample] = []
    sources: dict[tuple[object, float], tuple[int, str, str]] = {}
    """Which line, measurement and field made each series' point at a time:
    ``m b_c=1`` and ``m_b c=2`` on two lines are both ``m_b_c`` (one value
    would be lost without a word); the same field written again is a later value."""
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"line {number}"
        try:
            point = parse_line(stripped)
        except LineFormatError as exc:
            # The parser reads every timestamp as 64-bit nanoseconds, and says
            # "nanoseconds" whatever the precision asked: what it is here.
            said = str(exc)
            if "timestamp" in said:
                said += f" (a timestamp is a whole number of {precision} that fits in 64 bits)"
            raise BadWrite(where, f"{said} ({stripped[:80]!r})") from None
        stamped_at = now if point["time"] is None else point["time"] * unit
        if not 0 <= stamped_at <= latest:
            raise BadWrite(where, f"timestamp {point['time']} ({precision}) is before 1970 or ahead of the "
                                  "server's clock")
        measurement = metric_name(point["measurement"])
        labels = writer_labels(_tag_labels(point["tags"], where), tenant=tenant, deployment_hash=deployment_hash,
                               limits=limits, where=where)
        named: dict[str, str] = {}
        for field, value in point["fields"].items():
            if isinstance(value, str):
                continue
            number_value = float(value)
            if not math.isfinite(number_value):
                raise BadWrite(where, f"field {field!r} is not a finite number")
            name = f"{measurement}_{metric_name(field)}"
            if name in named:
                first, second = sorted((named[name], field))
                raise BadWrite(where, f"fields {first!r} and {second!r} are both metric {name!r}; rename one")
            named[name] = field
            series = series_of(name, labels, limits, where)
            seen = sources.setdefault((series, stamped_at), (number, point["measurement"], field))
            if seen[1:] != (point["measurement"], field):
                raise BadWrite(where, f"field {field!r} of {point['measurement']!r} and field {seen[2]!r} of "
                                      f"{seen[1]!r} (line {seen[0]}) are both metric {name!r} with the same tags "
                                      "and time; rename one")
            samples.append(Sample(series, number_value, stamped_at))
        check_point_count(len(samples), limits)
    return samples


def _tag_labels(tags: dict[str, str], where: str) -> dict[str, str]:
    """A point's tags as labels, refusing (``BadWrite``) two tags that would be
    one label: the same Prometheus name (``a.b``, ``a_b``), or a server label
    and its ``exported_`` name, which the server's label pushes it onto."""
    labels: dict[str, str] = {}
    tag_of: dict[str, str] = {}
    for tag, value in tags.items():
        name = label_name(tag)
        if name == "__name__":
            raise BadWrite(where, f"tag {tag!r} would be label __name__, the metric's name; rename it")
        if name in tag_of:
            first, second = sorted((tag_of[name], tag))
            raise BadWrite(where, f"tags {first!r} and {second!r} are both label {name!r}; rename one")
        tag_of[name] = tag
        labels[name] = value
    for name in SERVER_LABELS:
        exported = f"exported_{name}"
        if labels.get(name) and labels.get(exported):
            raise BadWrite(where, f"tags {tag_of[name]!r} and {tag_of[exported]!r} are both label {exported!r} "
                                  f"({name} is the server's label, so the writer's becomes {exported}); rename one")
    return labels
