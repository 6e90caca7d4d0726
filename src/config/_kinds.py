"""Value kinds: how one key's value is parsed, checked and shown.

Every kind takes the same inputs: strings from the environment, flags and quoted YAML
scalars, and the typed values YAML produces for unquoted scalars. Strings always go
through the same text parser, so ``port: "8080"`` in YAML means what ``APP_PORT=8080``
means; typed YAML values are accepted only when they are the right type (a YAML
boolean is never a number, and a bare YAML number is never a duration).
"""

from __future__ import annotations

import datetime
import ipaddress
import math
import os
import pathlib
import re
import urllib.parse
from typing import Protocol

import attrs
import idna

from trioscope.wire import IPV6_IN_BRACKETS, unbracketed_ipv6

from ._duration import duration_seconds, format_duration, format_duration_compact
from ._exceptions import InvalidValue

_INTEGER = re.compile(r"[+-]?[0-9]+")


class Kind(Protocol):
    """What every kind provides to the key table, the resolver and the help text."""

    @property
    def metavar(self) -> str:
        """Placeholder in ``--help``, e.g. ``N`` or ``DURATION`` (read-only: the kinds are frozen)."""
        ...

    @property
    def expected(self) -> str:
        """What a good value looks like, completing "expected ..."."""
        ...

    def parse(self, value: object) -> object:
        """Returns the checked value. Raises ``InvalidValue`` with a reason."""
        ...

    def limits(self) -> str | None:
        """The allowed values for help texts (``0..65535``), or None when unbounded."""
        ...

    def format(self, value: object) -> str:
        """The value as ``--print-config`` shows it."""
        ...

    def format_compact(self, value: object) -> str:
        """The value as help texts and the example file spell it."""
        ...


def _type_mismatch(value: object, expected: str) -> InvalidValue:
    """The error for a YAML value of the wrong type, e.g. ``is a boolean; expected ...``."""
    if value is None:
        found = "has no value"
    elif isinstance(value, bool):
        found = "is a boolean"
    elif isinstance(value, int):
        found = "is a whole number"
    elif isinstance(value, float):
        found = "is a decimal number"
    elif isinstance(value, (datetime.date, datetime.datetime)):
        found = "is a date"
    elif isinstance(value, dict):
        found = "is a mapping"
    elif isinstance(value, list):
        found = "is a list"
    else:
        found = f"is a {type(value).__name__}"
    return InvalidValue(f"{found}; expected {expected}")


@attrs.frozen
class IntegerKind:
    """A whole number within ``minimum..maximum`` (inclusive)."""

    minimum: int
    maximum: int
    metavar: str = "N"

    @property
    def expected(self) -> str:
        return f"a whole number in {self.limits()}"

    def parse(self, value: object) -> int:
        if isinstance(value, str):
            if not _INTEGER.fullmatch(value):
                raise InvalidValue(f"is not a whole number; expected {self.expected}")
            try:
                number = int(value)
            except ValueError:  # more digits than int() reads (4,300): far out of any range
                raise InvalidValue(f"is out of range; allowed {self.limits()}", quote=False) from None
        # bool is a subclass of int; YAML's true/yes/on must not become 1.
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            raise _type_mismatch(value, self.expected)
        if not self.minimum <= number <= self.maximum:
            raise InvalidValue(f"is out of range; allowed {self.limits()}", quote=False)
        return number

    def limits(self) -> str:
        return f"{self.minimum}..{self.maximum}"

    def format(self, value: object) -> str:
        return str(value)

    def format_compact(self, value: object) -> str:
        return str(value)


@attrs.frozen
class DurationKind:
    """A Go-style duration string within ``minimum..maximum`` seconds (inclusive)."""

    minimum: float
    maximum: float
    metavar: str = "DURATION"

    @property
    def expected(self) -> str:
        return f"a duration in {self.limits()}, like 90s, 5m or 1h"

    def parse(self, value: object) -> float:
        if isinstance(value, str):
            seconds = duration_seconds(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            # Units are mandatory: 3600 could mean seconds or milliseconds. Only
            # a suggestion that would be taken (not "nans", nor "1e+300s").
            if math.isfinite(value) and self.minimum <= value <= self.maximum:
                raise InvalidValue(f"has no unit; did you mean {value}s?")
            raise InvalidValue(f"has no unit, and is no duration in {self.limits()} as seconds either")
        else:
            raise _type_mismatch(value, self.expected)
        if not self.minimum <= seconds <= self.maximum:
            raise InvalidValue(f"is out of range; allowed {self.limits()}", quote=False)
        return seconds

    def limits(self) -> str:
        return f"{format_duration_compact(self.minimum)}..{format_duration_compact(self.maximum)}"

    def format(self, value: object) -> str:
        assert isinstance(value, (int, float))
        return format_duration(value)

    def format_compact(self, value: object) -> str:
        assert isinstance(value, (int, float))
        return format_duration_compact(value)


_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
               "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def format_size(size: int) -> str:
    """Bytes in the largest binary unit that divides them: ``10MiB``, ``1536B``."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


@attrs.frozen
class SizeKind:
    """A number of bytes within ``minimum..maximum``: ``10MiB``, ``512KiB``,
    ``1GB``, or a bare number of bytes."""

    minimum: int
    maximum: int
    metavar: str = "SIZE"

    @property
    def expected(self) -> str:
        return f"a size in {self.limits()}, like 512KiB or 10MiB"

    def parse(self, value: object) -> int:
        if isinstance(value, str):
            match = _SIZE.fullmatch(value.strip())
            if not match:
                raise InvalidValue(f"is not a size; expected {self.expected}")
            scaled = float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "B").lower()]
            if not math.isfinite(scaled):  # more than 308 digits: int() of it raised OverflowError
                raise InvalidValue(f"is out of range; allowed {self.limits()}", quote=False)
            size = int(scaled)
        elif isinstance(value, int) and not isinstance(value, bool):
            size = value
        else:
            raise _type_mismatch(value, self.expected)
        if not self.minimum <= size <= self.maximum:
            raise InvalidValue(f"is out of range; allowed {self.limits()}", quote=False)
        return size

    def limits(self) -> str:
        return f"{format_size(self.minimum)}..{format_size(self.maximum)}"

    def format(self, value: object) -> str:
        assert isinstance(value, int)
        return format_size(value)

    def format_compact(self, value: object) -> str:
        return self.format(value)


@attrs.frozen
class ChoiceKind:
    """One of a fixed set of lower-case words; input is matched case-insensitively
    (``INFO`` is ``info``) because upper-case log levels are a common habit.
    """

    choices: tuple[str, ...]
    metavar: str = "WORD"

    @property
    def expected(self) -> str:
        return f"one of {', '.join(self.choices)}"

    def parse(self, value: object) -> str:
        if not isinstance(value, str):
            raise _type_mismatch(value, self.expected)
        if value.lower() not in self.choices:
            raise InvalidValue(f"is not allowed; use {self.expected}")
        return value.lower()

    def limits(self) -> str:
        return self.expected

    def format(self, value: object) -> str:
        return str(value)

    def format_compact(self, value: object) -> str:
        return str(value)


@attrs.frozen
class HostKind:
    """A host name or IP address to bind: non-empty, at most 253 characters (the DNS
    limit), no whitespace. Whether it resolves is left to the bind, which says so.
    """

    metavar: str = "HOST"
    max_length: int = 253

    @property
    def expected(self) -> str:
        return "a host name or IP address"

    def parse(self, value: object) -> str:
        if not isinstance(value, str):
            raise _type_mismatch(value, f"{self.expected} (quote it in YAML)")
        if not value:
            raise InvalidValue(f"is empty; expected {self.expected}")
        if any(character.isspace() for character in value):
            raise InvalidValue(f"contains whitespace; expected {self.expected}")
        if len(value) > self.max_length:
            raise InvalidValue(f"is longer than {self.max_length} characters; expected {self.expected}")
        if not value.isprintable():
            # Bytes of no UTF-8 text too (Python reads argv with surrogateescape):
            # the bind raised a TypeError, a traceback.
            raise InvalidValue(f"is not printable UTF-8 text; expected {self.expected}")
        return value

    def limits(self) -> None:
        return None

    def format(self, value: object) -> str:
        return str(value)

    def format_compact(self, value: object) -> str:
        return str(value)


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


@attrs.frozen
class BoolKind:
    """A yes/no switch: YAML booleans, or text ``true``/``false``, ``yes``/``no``,
    ``on``/``off``, ``1``/``0`` in any case. A bare YAML number is not a boolean, as a
    YAML boolean is not a number.
    """

    metavar: str = "BOOL"

    @property
    def expected(self) -> str:
        return "true or false (also yes/no, on/off, 1/0)"

    def parse(self, value: object) -> bool:
        if isinstance(value, bool):
            return value
        if not isinstance(value, str):
            # Not "also 1/0": a YAML number is what was refused (quoted, "1" is read).
            raise _type_mismatch(value, "true or false")
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise InvalidValue(f"is not a boolean; use {self.expected}")

    def limits(self) -> str:
        return "true or false"

    def format(self, value: object) -> str:
        return "true" if value else "false"

    def format_compact(self, value: object) -> str:
        return self.format(value)


@attrs.frozen
class PathKind:
    """A file-system path: any non-empty text, a leading ``~`` expanded to the home
    directory. Whether it exists or is writable is left to whoever opens it, which says so.
    """

    metavar: str = "DIR"

    @property
    def expected(self) -> str:
        return "a path, like /var/lib/trioscope or ~/trioscope"

    def parse(self, value: object) -> pathlib.Path:
        if not isinstance(value, str):
            raise _type_mismatch(value, self.expected)
        if not value:
            raise InvalidValue(f"is empty; expected {self.expected}")
        if "\0" in value:
            raise InvalidValue(f"contains a NUL character; expected {self.expected}")
        try:
            return pathlib.Path(value).expanduser()
        except RuntimeError:
            raise InvalidValue(f"starts with ~ but the home directory is unknown; expected {self.expected}") from None

    def limits(self) -> None:
        return None

    def format(self, value: object) -> str:
        return str(value)

    def format_compact(self, value: object) -> str:
        """The path with the home directory written ``~`` again, so help texts and the
        example file read the same for every user."""
        path = pathlib.Path(str(value))
        try:
            home = pathlib.Path.home()
        except RuntimeError:
            return str(path)
        if home != pathlib.Path(home.anchor) and path.is_relative_to(home):
            return os.path.join("~", path.relative_to(home))
        return str(path)


@attrs.frozen
class DatabaseKind:
    """Where durable state lives: empty (SQLite in ``storage.data_dir``),
    ``sqlite:PATH``, or a PostgreSQL URL (``postgresql://user@host/db``). A
    password in the URL is never shown."""

    metavar: str = "URL"

    @property
    def expected(self) -> str:
        return "empty (SQLite in data_dir), sqlite:PATH, or postgresql://[user[:password]@]host[:port]/database"

    def parse(self, value: object) -> str:
        if not isinstance(value, str):
            raise _type_mismatch(value, self.expected)
        if not value:
            return value
        scheme, colon, rest = value.partition(":")
        if not colon or scheme not in ("sqlite", "postgresql", "postgres"):
            raise InvalidValue(f"names no known database; expected {self.expected}", quote=False)
        if scheme == "sqlite" and not rest:
            raise InvalidValue("names no file after sqlite:", quote=False)
        if scheme != "sqlite" and not rest.startswith("//"):
            raise InvalidValue(f"is not a URL; expected {self.expected}", quote=False)
        if scheme != "sqlite" and (problem := _postgres_url_problem(rest[2:])) is not None:
            raise InvalidValue(f"{problem}; expected {self.expected}", quote=False)
        return value

    def limits(self) -> str:
        return self.expected

    def format(self, value: object) -> str:
        assert isinstance(value, str)
        return "(SQLite in data_dir)" if not value else mask_password(value)

    def format_compact(self, value: object) -> str:
        assert isinstance(value, str)
        return mask_password(value)


_PORT = re.compile(r"[0-9]{1,5}")


def _postgres_url_problem(rest: str) -> str | None:
    """What libpq would refuse only when it connects (``invalid port number``,
    exit 1 at start) in a PostgreSQL URL after its ``//``; None: nothing.
    Read as libpq reads it: the user part ends at the first ``@`` before any
    ``/``; then one or more ``host[:port]`` (``[v6]:port``), comma-separated;
    then ``/database`` and ``?parameters``. A host or a database may be given
    as a parameter instead (``?host=/run/postgresql``: a unix socket)."""
    head, at, tail = rest.partition("@")
    if not at or "/" in head:
        tail = rest
    if unbracketed_ipv6(f"postgresql://{tail}"):
        return IPV6_IN_BRACKETS
    if "#" in tail:  # (a password may hold one)
        return "has a fragment (#...), which a PostgreSQL URL cannot have"
    end = min((i for i in (tail.find("/"), tail.find("?")) if i >= 0), default=len(tail))
    path, _, query = tail[end:].partition("?")
    parameters = {name.strip().lower() for name, _, _ in (p.partition("=") for p in query.split("&"))}
    if not path.removeprefix("/") and "dbname" not in parameters:
        return "names no database (/database after the host)"
    for host in tail[:end].split(","):
        if host.startswith("["):
            name, _, port = host[1:].partition("]")
            if port and not port.startswith(":"):
                return "has a bad host"
            port = port[1:]
        else:
            name, _, port = host.partition(":")
        if not name and not parameters & {"host", "hostaddr"}:
            return "names no host"
        if port and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
            return "has a bad port (1-65535)"
    return None


def mask_passwords(urls: str) -> str:
    """``mask_password`` of each of comma-separated URLs (a NATS cluster's
    servers), with a user part that holds no ``:`` masked whole: NATS takes
    a token there (``nats://TOKEN@host``)."""
    return ",".join(_mask_token(mask_password(url)) for url in urls.split(","))


_SECRET_PARAMETER = re.compile(r"""(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s'"]*)""", re.IGNORECASE)
"""A password in libpq's keyword/value form (``password=x``, ``password='x y'``,
``sslpassword=x``: its prefix is left as it is), or written so in a driver's
error. No run of word characters before the name: it made a long word cost quadratic time
(a 20,000-character value took 1.75 s to mask, 250,000 six minutes)."""


def mask_password(url: str) -> str:
    """``url`` with its passwords replaced by ``***``: its user part's
    (``user:***@``) and every query parameter's whose name, percent-decoded,
    ends in ``password`` (libpq decodes names: ``?pass%77ord=`` is one); in
    libpq's keyword/value form, every ``_SECRET_PARAMETER``."""
    scheme, sep, userinfo, at, host = _url_parts(url)
    if not sep:
        return _SECRET_PARAMETER.sub(r"\1***", url)
    if at and ":" in userinfo:
        userinfo = userinfo.partition(":")[0] + ":***"
    path, question, query = host.partition("?")
    if question:
        query = "&".join(f"{name}=***" if secret else f"{name}{equals}{value}"
                         for name, equals, value, secret in _parameters(query))
    return f"{scheme}://{userinfo}{at}{path}{question}{query}"


def _parameters(query: str) -> list[tuple[str, str, str, bool]]:
    """A URL query's parameters as written: name, ``=``, value, and whether the value is a password."""
    parameters = []
    for parameter in query.split("&"):
        name, equals, value = parameter.partition("=")
        parameters.append((name, equals, value, bool(equals) and
                           urllib.parse.unquote(name).strip().lower().endswith("password")))
    return parameters


def _url_parts(url: str) -> tuple[str, str, str, str, str]:
    """``scheme``, ``://`` (empty: no URL), the user part, ``@`` (empty: none), and the rest."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    return scheme, sep, userinfo, at, host


def _mask_token(url: str) -> str:
    scheme, sep, userinfo, at, host = _url_parts(url)
    if not sep or not at or ":" in userinfo:
        return url
    return f"{scheme}://***@{host}"


def hide_passwords(text: str, url: str, *, user_is_token: bool = False) -> str:
    """``text`` (a driver's error, which may quote ``url`` or a part of it,
    even one it could not parse) with ``url``'s passwords replaced by
    ``***`` wherever they occur in it, as written and decoded: its user
    part's, every one given as a parameter (``mask_password``), and with
    ``user_is_token`` a user part without ``:`` (a NATS token)."""
    _, sep, userinfo, _, host = _url_parts(url)
    secrets = {match[2].strip("'") for match in _SECRET_PARAMETER.finditer(url)}
    if sep:
        if ":" in userinfo:
            secrets.add(userinfo.partition(":")[2])
        elif user_is_token:
            secrets.add(userinfo)
        secrets |= {value for _, _, value, secret in _parameters(host.partition("?")[2]) if secret}
    secrets |= {urllib.parse.unquote(secret) for secret in secrets}
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return _SECRET_PARAMETER.sub(r"\1***", text)


@attrs.frozen
class HttpUrlKind:
    """Empty, or an ``http://`` or ``https://`` URL with a host (a base URL: no query)."""

    metavar: str = "URL"

    @property
    def expected(self) -> str:
        return "empty, or http://host[:port][/path]"

    def parse(self, value: object) -> str:
        if not isinstance(value, str):
            raise _type_mismatch(value, self.expected)
        if not value:
            return value
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise InvalidValue(f"is not a base URL; expected {self.expected}", quote=False)
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
        except ValueError:
            raise InvalidValue(f"has a bad port; expected {self.expected}", quote=False) from None
        return value.rstrip("/")

    def limits(self) -> str:
        return self.expected

    def format(self, value: object) -> str:
        assert isinstance(value, str)
        return "(embedded)" if not value else mask_password(value)

    def format_compact(self, value: object) -> str:
        assert isinstance(value, str)
        return mask_password(value)


@attrs.frozen
class NatsUrlKind:
    """Empty, or a NATS server URL (``nats://host:port``, ``tls://host:port``);
    several servers of one cluster separated by commas. A password in it is never shown."""

    metavar: str = "URL"

    @property
    def expected(self) -> str:
        return "empty, or nats://host[:port] or tls://host[:port] (several: comma-separated)"

    def parse(self, value: object) -> str:
        if not isinstance(value, str):
            raise _type_mismatch(value, self.expected)
        if not value:
            return value
        for server in value.split(","):
            parts = urllib.parse.urlsplit(server.strip())
            if unbracketed_ipv6(server.strip()):
                raise InvalidValue(f"is not a NATS URL: {IPV6_IN_BRACKETS}", quote=False)
            if parts.scheme not in ("nats", "tls") or not parts.hostname:
                raise InvalidValue(f"is not a NATS URL; expected {self.expected}", quote=False)
            # NATS has no paths, queries or fragments: nats-py would drop them
            # without a word, so a URL meant for something else would be used as
            # if it were the server's. A bare trailing "/" is only the root.
            extra = [name for name, given in (("a path", parts.path not in ("", "/")), ("a query", parts.query),
                                              ("a fragment", parts.fragment)) if given]
            if extra or "?" in server or "#" in server:
                raise InvalidValue(f"has {' and '.join(extra) or 'a query or fragment'}, which a NATS URL cannot have; "
                                   f"expected {self.expected}", quote=False)
            try:
                parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
            except ValueError:
                raise InvalidValue(f"has a bad port; expected {self.expected}", quote=False) from None
        return value

    def limits(self) -> str:
        return self.expected

    def format(self, value: object) -> str:
        assert isinstance(value, str)
        return "(none: reports merged in this process)" if not value else mask_passwords(value)

    def format_compact(self, value: object) -> str:
        assert isinstance(value, str)
        return mask_passwords(value)


@attrs.frozen
class NameKind:
    """A name made of letters, digits, ``_`` and ``-`` (a NATS stream name, which
    is also the first token of its subjects)."""

    metavar: str = "NAME"
    max_length: int = 32

    @property
    def expected(self) -> str:
        return f"1 to {self.max_length} letters, digits, _ or -"

    def parse(self, value: object) -> str:
        if not isinstance(value, str):
            raise _type_mismatch(value, self.expected)
        if not re.fullmatch(rf"[A-Za-z0-9_-]{{1,{self.max_length}}}", value):
            raise InvalidValue(f"is not a name; expected {self.expected}")
        return value

    def limits(self) -> str:
        return self.expected

    def format(self, value: object) -> str:
        assert isinstance(value, str)
        return value

    def format_compact(self, value: object) -> str:
        assert isinstance(value, str)
        return value


@attrs.frozen
class TenantKind:
    """Empty, or a tenant's id as user tokens carry it (1 to 128 characters, none a control character)."""

    metavar: str = "TENANT"
    empty: str = "(none)"
    """What an empty value means, as the effective configuration shows it."""

    @property
    def expected(self) -> str:
        return "empty, or a tenant id of 1 to 128 characters without control characters"

    def parse(self, value: object) -> str:
        if not isinstance(value, str):
            raise _type_mismatch(value, self.expected)
        if len(value) > 128 or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise InvalidValue(f"is not a tenant id; expected {self.expected}")
        return value

    def limits(self) -> str:
        return self.expected

    def format(self, value: object) -> str:
        assert isinstance(value, str)
        return value or self.empty

    def format_compact(self, value: object) -> str:
        assert isinstance(value, str)
        return value


class SecretKind:
    """A signing key: empty (meaning "generate one") or at least ``min_length``
    characters. Its value is never shown: not in ``--print-config``, not in problems
    (``Key.secret`` tells the resolver), and such keys get no command-line flag,
    since ``ps`` shows command lines to every user.
    """

    min_length: int = 32
    empty_means: str = "generated in data_dir"
    """What ``--print-config`` shows for the empty value."""
    metavar: str = "SECRET"

    @property
    def expected(self) -> str:
        return f"empty, or at least {self.min_length} characters"

    def parse(self, value: object) -> str:
        if not isinstance(value, str):
            raise _type_mismatch(value, f"{self.expected} (quote it in YAML)")
        if value and len(value) < self.min_length:
            raise InvalidValue(f"is too short ({len(value)} characters); expected {self.expected}", quote=False)
        return value

    def limits(self) -> str:
        return self.expected

    def format(self, value: object) -> str:
        assert isinstance(value, str)
        return f"({self.empty_means})" if not value else f"(set, {len(value)} characters)"

    def format_compact(self, value: object) -> str:
        """The empty text for the empty default (so it parses back); otherwise masked."""
        assert isinstance(value, str)
        return "" if not value else self.format(value)


@attrs.frozen
class OptionalFileKind:
    """A file to read, or empty for none: any text without NUL, a leading ``~``
    expanded. Whether it exists and parses is left to whoever opens it (at start),
    which says so."""

    metavar: str = "FILE"

    @property
    def expected(self) -> str:
        return "a file path, or empty for none"

    def parse(self, value: object) -> str:
        if not isinstance(value, str):
            raise _type_mismatch(value, self.expected)
        if "\0" in value:
            raise InvalidValue(f"contains a NUL character; expected {self.expected}")
        try:
            return os.path.expanduser(value) if value else ""
        except RuntimeError:
            raise InvalidValue(f"starts with ~ but the home directory is unknown; expected {self.expected}") from None

    def limits(self) -> None:
        return None

    def format(self, value: object) -> str:
        return str(value) or "(none)"

    def format_compact(self, value: object) -> str:
        return str(value)


def _items(value: object, expected: str) -> list[str]:
    """A YAML list of strings, or text separated by commas (flags, environment)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value if item.strip()]
    raise _type_mismatch(value, expected)


def _which(item: str, items: list[str]) -> str:
    """The start of a problem with one of ``items``: "is" for a lone one (the value is shown already)."""
    return "is" if len(items) == 1 else f"has {item!r}, which is"


@attrs.frozen
class NetworksKind:
    """IP networks in CIDR notation (``10.0.0.0/8``, ``::1/128``; a bare address is
    one host), as a YAML list or text separated by commas; empty for none."""

    metavar: str = "CIDR[,CIDR...]"
    most: int = 256

    @property
    def expected(self) -> str:
        return "IP networks such as 10.0.0.0/8,::1 (comma-separated or a YAML list), or empty"

    def parse(self, value: object) -> tuple[str, ...]:
        items = _items(value, self.expected)
        if len(items) > self.most:
            raise InvalidValue(f"lists {len(items)} networks; at most {self.most}", quote=False)
        networks = []
        for item in items:
            try:
                networks.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise InvalidValue(f"{_which(item, items)} not an IP network; expected {self.expected}") from None
        return tuple(networks)

    def limits(self) -> None:
        return None

    def format(self, value: object) -> str:
        assert isinstance(value, tuple)
        return ",".join(value) or "(none)"

    def format_compact(self, value: object) -> str:
        assert isinstance(value, tuple)
        return ",".join(value)


_HOST_NAME = re.compile(r"\.?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


@attrs.frozen
class HostNamesKind:
    """DNS names a client may ask for in ``Host`` (``ops.example.com``; with a
    leading dot, a domain and every name under it), as a YAML list or text
    separated by commas; ``*`` for any; empty for the default. Lower case."""

    metavar: str = "NAME[,NAME...]"
    most: int = 256

    @property
    def expected(self) -> str:
        return "host names such as ops.example.com,.corp.example (comma-separated or a YAML list), * for any, or empty"

    def parse(self, value: object) -> tuple[str, ...]:
        items = _items(value, self.expected)
        if len(items) > self.most:
            raise InvalidValue(f"lists {len(items)} host names; at most {self.most}", quote=False)
        if "*" in items:
            if len(items) > 1:
                raise InvalidValue("mixes * with host names; give either * or the names", quote=False)
            return ("*",)
        names = []
        for item in items:
            name = item.lower().rstrip(".")
            if len(name) > 253 or not _HOST_NAME.fullmatch(name):
                raise InvalidValue(f"{_which(item, items)} not a host name (letters, digits, hyphens and dots, "
                                   f"no port{_punycode_hint(name)}); expected {self.expected}")
            names.append(name)
        return tuple(dict.fromkeys(names))

    def limits(self) -> None:
        return None

    def format(self, value: object) -> str:
        assert isinstance(value, tuple)
        return ",".join(value) or "(by --host)"

    def format_compact(self, value: object) -> str:
        assert isinstance(value, tuple)
        return ",".join(value)


_ORIGIN = re.compile(r"(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _browser_origin(text: str) -> str | None:
    """``text`` as a browser writes the origin in ``Origin`` (the WHATWG URL
    serialisation: lower case, no default port, an IPv6 address compressed
    in hexadecimal: ``http://[0:0::1]:3001`` is sent as ``http://[::1]:3001``
    and ``[::ffff:127.0.0.1]`` as ``[::ffff:7f00:1]``), or None if it is no
    origin. Compared as written, an allowed origin of another spelling never
    matched."""
    match = _ORIGIN.fullmatch(text)
    if match is None:
        return None
    scheme, host, port = match.group(1).lower(), match.group(2).lower(), match.group(3)
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None
        host = f"[{_ipv6_serialised(address)}]"
    if port is not None and int(port) > 65535:
        return None
    if port is not None and port.lstrip("0") != _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{int(port)}"
    return f"{scheme}://{host}"


def _ipv6_serialised(address: ipaddress.IPv6Address) -> str:
    """The WHATWG URL standard's IPv6 serialiser: hexadecimal pieces, the first
    longest run of two or more zero pieces as ``::`` (Python writes an
    IPv4-mapped address with a dotted tail since 3.13; browsers never do)."""
    # From the number, not the text: 3.13's ``exploded`` ends a mapped address in dotted quads.
    pieces = [(int(address) >> shift) & 0xFFFF for shift in range(112, -1, -16)]
    best, best_length, start = -1, 1, None
    for index, piece in enumerate([*pieces, 1]):
        if piece == 0 and start is None:
            start = index
        elif piece != 0 and start is not None:
            if index - start > best_length:
                best, best_length = start, index - start
            start = None
    if best < 0:
        return ":".join(f"{piece:x}" for piece in pieces)
    head = ":".join(f"{piece:x}" for piece in pieces[:best])
    tail = ":".join(f"{piece:x}" for piece in pieces[best + best_length:])
    return f"{head}::{tail}"


@attrs.frozen
class OriginsKind:
    """Web origins exactly as browsers send them in ``Origin`` (``scheme://host[:port]``,
    no path), as a YAML list or text separated by commas; ``*`` for any; empty for none.
    Host names are compared in lower case, as browsers send them."""

    metavar: str = "ORIGIN[,ORIGIN...]"
    most: int = 256

    @property
    def expected(self) -> str:
        return "origins such as https://ops.example.com,http://localhost:3000 (comma-separated or a YAML list), * for any, or empty"

    def parse(self, value: object) -> tuple[str, ...]:
        items = _items(value, self.expected)
        if len(items) > self.most:
            raise InvalidValue(f"lists {len(items)} origins; at most {self.most}", quote=False)
        if "*" in items:
            if len(items) > 1:
                raise InvalidValue("mixes * with origins; give either * or the origins", quote=False)
            return ("*",)
        origins = []
        for item in items:
            origin = _browser_origin(item)
            if origin is None:
                raise InvalidValue(f"{_which(item, items)} not an origin (scheme://host[:port], no path or "
                                   f"trailing slash); expected {self.expected}")
            origins.append(origin)
        return tuple(dict.fromkeys(origins))

    def limits(self) -> None:
        return None

    def format(self, value: object) -> str:
        assert isinstance(value, tuple)
        return ",".join(value) or "(none: no cross-origin requests)"

    def format_compact(self, value: object) -> str:
        assert isinstance(value, tuple)
        return ",".join(value)


def _punycode_hint(name: str) -> str:
    """For a name of letters beyond ASCII, the form a browser sends it in
    (UTS #46 nontransitional, as browsers map it: ``straße.de`` is
    ``xn--strae-oqa.de``, where Python's own IDNA 2003 codec says
    ``strasse.de``), which the Host header holds. None for a name with a
    port, which the message refuses for that already."""
    if name.isascii() or ":" in name:
        return ""
    try:
        return f"; a browser sends this one as {idna.encode(name, uts46=True, transitional=False).decode()}"
    except idna.IDNAError:
        return ""
