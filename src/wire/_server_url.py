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
    if unbracketed_ipv6(url):
        return f"is not a URL: {IPV6_IN_BRACKETS}"
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


IPV6_IN_BRACKETS = "an IPv6 address in a URL goes in brackets (http://[::1]:8080, nats://[fd00::2]:4222)"


def unbracketed_ipv6(url: str) -> bool:
    """Whether a host of ``url`` (``scheme://[user@]host[:port][,host...]/...``)
    is an IPv6 address written without its brackets (``nats://::1:4222``):
    parsers then read a port out of it, or no host, and their words
    ("Port could not be cast", "names no host") do not say why."""
    authority = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    hosts = authority.rpartition("@")[2]
    return any(host.count(":") > 1 and not host.startswith("[") for host in hosts.split(","))
