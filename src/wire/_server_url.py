"""What a client (the probe, ``trioscope health``) takes as the server's base
URL: shared so that both refuse the same values with the same words, before
an HTTP client raises on them (a 40-line traceback for ``http://h:notaport``),
and show it alike, without its password."""

from __future__ import annotations

from urllib.parse import urlsplit

HIDDEN = "***"


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


def shown_url(url: str) -> str:
    """``url`` for a log line or a message: the password of its user part
    replaced by ``***`` (``http://user:***@host``); the rest as given."""
    scheme, sep, rest = url.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    userinfo, at, _ = authority.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:{HIDDEN}@{rest[len(userinfo) + 1:]}"
