"""JSON write bodies, read into samples.

    {"points": [{"metric": "cpu_usage", "labels": {"core": "0"},
                 "value": 0.5, "timestamp": 1705305600.25}]}

``timestamp`` (unix seconds, or an RFC 3339 string) may be left out: the
server's time. Unlike line protocol, whose names come from systems with other
naming rules and are converted, these are Prometheus names already, so a name
Prometheus would refuse is refused here, naming the field. So is a point with
both a server label and its ``exported_`` name (``tenant`` and
``exported_tenant``): the writer's ``tenant`` becomes ``exported_tenant``, and
one of the two values would be lost.
"""

from __future__ import annotations

import math
from typing import Any

from trioscope.wire import RFC3339, FieldError, parse_timestamp

from ._exceptions import BadWrite
from ._samples import (
    LABEL_NAME,
    METRIC_NAME,
    SERVER_LABELS,
    Sample,
    WriteLimits,
    check_point_count,
    series_of,
    writer_labels,
)


def _timestamp(value: Any, now: float, where: str) -> float:
    if value is None:
        return now
    if isinstance(value, str):
        # RFC 3339 only, as the reports' times (``fromisoformat`` alone took
        # ISO 8601's other forms too: "20261206T120000Z", "2026-W49-5T12:00:00Z").
        if not RFC3339.fullmatch(value):
            raise BadWrite(where, f"must be unix seconds or an RFC 3339 time like 2025-10-13T00:00:00Z (with its "
                                  f"offset), got {value[:40]!r}")
        try:
            return parse_timestamp(value).timestamp()
        except FieldError as exc:  # month 13; before 1970
            raise BadWrite(where, str(exc)) from None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise BadWrite(where, "must be unix seconds or an RFC 3339 time")


def parse_json_points(document: Any, *, now: float, latest: float, tenant: str, deployment_hash: str,
                      limits: WriteLimits) -> list[Sample]:
    """The samples of a parsed JSON write body.

    Raises:
        BadWrite: naming the JSON path of the first bad value.
        WriteLimitExceeded: too many points or labels too long (413).
    """
    if not isinstance(document, dict) or not isinstance(document.get("points"), list):
        raise BadWrite("$.points", "must be a list of points")
    points = document["points"]
    check_point_count(len(points), limits)
    samples = []
    for index, point in enumerate(points):
        at = f"$.points[{index}]"
        if not isinstance(point, dict):
            raise BadWrite(at, "must be an object")
        unknown = set(point) - {"metric", "labels", "value", "timestamp"}
        if unknown:
            raise BadWrite(f"{at}.{sorted(unknown)[0]}", "is not a field of a point (metric, labels, value, timestamp)")
        name = point.get("metric")
        if not isinstance(name, str) or not METRIC_NAME.fullmatch(name):
            raise BadWrite(f"{at}.metric", "must be a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
        labels = point.get("labels", {})
        if not isinstance(labels, dict):
            raise BadWrite(f"{at}.labels", "must be an object of label names to strings")
        for key, item in labels.items():
            if not LABEL_NAME.fullmatch(key) or key.startswith("__"):
                raise BadWrite(f"{at}.labels.{key[:64]}", "is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not __*)")
            if not isinstance(item, str):
                raise BadWrite(f"{at}.labels.{key}", "must be a string")
        for server_label in SERVER_LABELS:
            exported = f"exported_{server_label}"
            if labels.get(server_label) and labels.get(exported):
                raise BadWrite(f"{at}.labels.{exported}", f"labels {server_label!r} and {exported!r} are both label "
                                                          f"{exported!r} ({server_label} is the server's label, so "
                                                          f"the writer's becomes {exported}); rename one")
        value = point.get("value")
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise BadWrite(f"{at}.value", "must be a finite number")
        stamped_at = _timestamp(point.get("timestamp"), now, f"{at}.timestamp")
        if not 0 <= stamped_at <= latest:
            raise BadWrite(f"{at}.timestamp", "is before 1970 or ahead of the server's clock")
        series = series_of(name, writer_labels(labels, tenant=tenant, deployment_hash=deployment_hash, limits=limits,
                                               where=at), limits, at)
        samples.append(Sample(series, float(value), stamped_at))
    return samples
