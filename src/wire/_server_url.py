"""What a client (the probe, ``trioscope health``) takes as the server's base
URL: shared so that both refuse the same values with the same words, before
an HTTP client raises on them (a 40-line traceback for ``http://h:notaport``)."""

from __future__ import annotations

from urllib.parse import urlsplit


def server_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the server's base URL; None when it can."""
    if not url.startswith(("http://", "https://")):
        return "must be an http:// or https:// URL"
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return "must not hold spaces or control characters (a line end from a file, say)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - read for its check: a port that is no number, or past 65535, raises
    except ValueError as exc:
        return f"is not a URL: {exc}"
    if not parts.hostname:
        return "names no host"
    if parts.query or parts.fragment:
        return "must not have a query (?...) or a fragment (#...): the server's paths are added to it"
    return None
