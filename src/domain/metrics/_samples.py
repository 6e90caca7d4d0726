"""Samples as written by agents, their label rules and the limits on a write.

A sample is one value of one series at one time. A series is its label set,
``__name__`` included, as a sorted tuple of pairs: hashable, compared by
value, and the same whichever order the labels came in.
"""

from __future__ import annotations

import functools
import re

import attrs

from ._exceptions import WriteLimitExceeded

Labels = tuple[tuple[str, str], ...]
"""A series' identity: sorted ``(name, value)`` pairs including ``__name__``."""

TENANT_LABEL = "tenant"
DEPLOYMENT_LABEL = "deployment_hash"
SERVER_LABELS = (TENANT_LABEL, DEPLOYMENT_LABEL)
"""Set by the server from the agent's credentials; a writer's own labels of these
names are kept as ``exported_<name>`` (Prometheus' ``honor_labels: false``)."""

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NOT_NAME_CHAR = re.compile(r"[^a-zA-Z0-9_:]")
_NOT_LABEL_CHAR = re.compile(r"[^a-zA-Z0-9_]")


@attrs.frozen(slots=True)
class Sample:
    """One value of one series."""

    labels: Labels
    """Sorted pairs, ``__name__`` included."""
    value: float
    timestamp: float
    """Unix seconds (millisecond precision is what the backends keep)."""

    @property
    def name(self) -> str:
        return dict(self.labels)["__name__"]


@attrs.frozen(kw_only=True)
class WriteLimits:
    """The bounds on one write request; each names its configuration key."""

    max_points: int
    """``metrics.max_points_per_request``."""
    max_labels: int
    """``metrics.max_labels_per_series`` (``__name__`` and the server's labels included)."""
    max_label_name_bytes: int
    """``metrics.max_label_name_bytes`` (metric names too)."""
    max_label_value_bytes: int
    """``metrics.max_label_value_bytes``."""


@functools.lru_cache(maxsize=4096)
def metric_name(text: str) -> str:
    """``text`` as a Prometheus metric name: invalid characters become ``_`` (as
    Telegraf's Prometheus output and the Influx importers of Prometheus-style
    engines do), so ``disk.io`` is ``disk_io``."""
    name = _NOT_NAME_CHAR.sub("_", text)
    return "_" + name if name[:1].isdigit() else name


@functools.lru_cache(maxsize=4096)
def label_name(text: str) -> str:
    """``text`` as a Prometheus label name, invalid characters as ``_``."""
    name = _NOT_LABEL_CHAR.sub("_", text)
    return "_" + name if name[:1].isdigit() else name


def _longer(text: str, limit: int) -> bool:
    # A character is at most 4 bytes: encode only what may be too long.
    return len(text) * 4 > limit and len(text.encode()) > limit


def _name_too_long(name: str, limits: WriteLimits, where: str) -> WriteLimitExceeded:
    return WriteLimitExceeded(413, "label_name_too_long",
                              f"{where}: name {name[:64]!r}... is longer than {limits.max_label_name_bytes} "
                              "bytes (metrics.max_label_name_bytes)",
                              config_key="metrics.max_label_name_bytes", limit=limits.max_label_name_bytes,
                              where=where)


def writer_labels(labels: dict[str, str], *, tenant: str, deployment_hash: str, limits: WriteLimits,
                  where: str) -> dict[str, str]:
    """A point's labels, checked against the limits, with the server's labels
    set from the credentials (a writer's own ``tenant`` becomes
    ``exported_tenant``). Checked once per point, before its fields are named.

    Raises:
        WriteLimitExceeded: 413, naming the label, ``where`` and the configuration key.
    """
    pairs: dict[str, str] = {}
    for key, value in labels.items():
        if not value:
            continue  # an empty label value is no label (Prometheus)
        if _longer(key, limits.max_label_name_bytes):
            raise _name_too_long(key, limits, where)
        if _longer(value, limits.max_label_value_bytes):
            raise WriteLimitExceeded(413, "label_value_too_long",
                                     f"{where}: the value of label {key!r} is longer than "
                                     f"{limits.max_label_value_bytes} bytes (metrics.max_label_value_bytes)",
                                     config_key="metrics.max_label_value_bytes", limit=limits.max_label_value_bytes,
                                     where=where)
        pairs[f"exported_{key}" if key in SERVER_LABELS else key] = value
    pairs[TENANT_LABEL] = tenant
    pairs[DEPLOYMENT_LABEL] = deployment_hash
    if len(pairs) + 1 > limits.max_labels:
        raise WriteLimitExceeded(413, "too_many_labels",
                                 f"{where}: {len(pairs) + 1} labels, more than {limits.max_labels} "
                                 "(metrics.max_labels_per_series; __name__, tenant and deployment_hash count)",
                                 config_key="metrics.max_labels_per_series", limit=limits.max_labels, where=where)
    return pairs


def series_of(name: str, labels: dict[str, str], limits: WriteLimits, where: str) -> Labels:
    """The series of metric ``name`` with ``writer_labels``' result."""
    if _longer(name, limits.max_label_name_bytes):
        raise _name_too_long(name, limits, where)
    return tuple(sorted({**labels, "__name__": name}.items()))


def check_point_count(count: int, limits: WriteLimits) -> None:
    """Raises WriteLimitExceeded (413) when a request holds more points than allowed."""
    if count > limits.max_points:
        raise WriteLimitExceeded(413, "too_many_points",
                                 f"the request holds more than {limits.max_points} points "
                                 "(metrics.max_points_per_request); send them in smaller requests",
                                 config_key="metrics.max_points_per_request", limit=limits.max_points)
