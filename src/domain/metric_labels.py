"""Label values for exported metrics, bounded whatever clients send: a
Prometheus series per label value costs memory in every scraper, so a label
never carries a raw path, a message, a free-form type or an unbounded set of
names. Pure."""

from __future__ import annotations

OTHER = "other"
"""The label value of everything past a bound (a tenant past the cap, a command type nobody knows)."""

KNOWN_COMMAND_TYPES = frozenset({
    # The project's probe runs these (trioscope_probe._executor).
    "docker.start", "docker.stop", "docker.restart", "docker.pause", "docker.unpause",
    "docker.remove", "docker.inspect", "docker.logs", "docker.exec",
    # The seed's examples (stacker-command-service 3.1.2, 8.1).
    "application.update", "backup", "restart", "update", "deploy",
})
"""Command types named in labels; any other type (they are free-form, 1-100
characters) is counted as ``other``."""


def command_type_label(command_type: str) -> str:
    """The ``type`` label of a command type: itself if known, else ``other``."""
    return command_type if command_type in KNOWN_COMMAND_TYPES else OTHER


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """An HTTP method as metrics and the access log name it: itself if it is one
    of ``HTTP_METHODS``, else ``other`` (any client may send any token there:
    805 made-up ones took a scrape from 2,855 series to 58,357, and one of
    15,000 characters made an access-log line of 15 KB)."""
    return method if method in HTTP_METHODS else OTHER


_ERROR_TYPES = {
    400: "validation", 422: "validation", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 408: "timeout", 409: "conflict", 410: "gone", 413: "too_large",
    415: "unsupported_media_type", 429: "rate_limited", 503: "unavailable", 504: "timeout",
}


def api_error_type(status: int) -> str | None:
    """The ``type`` label of ``trydirect_api_errors_total`` for a response
    status: a class of error, never its message; None for a success."""
    if status < 400:
        return None
    return _ERROR_TYPES.get(status, "internal" if status >= 500 else "client")


class TenantLabels:
    """The ``tenant`` label of each tenant: its name for the first ``limit``
    tenants seen, ``other`` for the rest (kept for the server's life, so a
    tenant's series never moves between labels)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._named: set[str] = set()

    def label(self, tenant: str) -> str:
        if tenant in self._named:
            return tenant
        if len(self._named) < self.limit:
            self._named.add(tenant)
            return tenant
        return OTHER
