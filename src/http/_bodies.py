"""Reading requests: the path's length; bodies' size limits (also after
decompression) and the budgets of bodies being received (per client address,
and in all: ``_connection_limits``), gzip, JSON."""

from __future__ import annotations

import contextlib
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import orjson
import trio
from quart import current_app, g, request
from werkzeug.exceptions import RequestTimeout

from trioscope.config import Settings, format_duration
from trioscope.runtime import in_thread
from trioscope.wire import InvalidDocument, decode

from . import _client_address
from ._connection_limits import BODY_PER_ADDRESS, BodyRead, Held, admission_of_app
from ._errors import ApiError, field_error
from ._responses import JSON
from ._services import services

T = TypeVar("T")


OFF_LOOP_BYTES = 256 * 1024
"""Bodies larger than this are parsed and checked in a worker thread
(``off_loop``): JSON of many small objects takes ~0.1-0.2 s a MB to parse and
check, and one 8.6 MB body held every other request up for 0.6-0.9 s on the
event loop (an unauthenticated registration's, an agent's command result).
Smaller ones (a typical host's report is ~20 KB) cost less done here than
handed over."""


async def off_loop(body: bytes, work: Callable[[bytes], T], *, limiter: trio.CapacityLimiter | None = None,
                   threshold: int = OFF_LOOP_BYTES) -> T:
    """``work(body)``: here for a body up to ``threshold`` bytes, else in a
    worker thread of ``limiter`` (None: the server's heavy request work, one
    at a time: with the GIL a second thread adds memory, not speed;
    ``in_worker``)."""
    if len(body) <= threshold:
        return work(body)
    return await in_worker(work, body, limiter=limiter or services().heavy_work)


async def in_worker(work: Callable[..., T], *args: Any, limiter: trio.CapacityLimiter) -> T:
    """``work(*args)`` in a worker thread of ``limiter``; the refusal it
    raises (``ApiError``) raised here without what it passed through
    (``runtime.in_thread``): crossing as it was, each refusal kept the body
    and what was decoded of it in reference cycles, and 10 MB reports refused
    over the memory budget kept ~4 MB each (RSS 98 MB -> 961 MB after 200 of
    them, and there to stay). Any other exception is a bug, answered 500
    with its traceback logged: it crosses as it is."""
    return await in_thread(work, *args, refusals=(ApiError,), limiter=limiter)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"request body is larger than the limit of {limit} bytes",
                    details={"limit_bytes": limit})


MAX_GZIP_MEMBERS = 64
"""Gzip members in one body: RFC 1952 allows several (Go's and Python's readers
take them); nobody sends thousands, and each costs a decompressor."""
_GZIP_CHUNK = 64 * 1024


def _gunzip(body: bytes, limit: int) -> bytes:
    """All members of a gzip body, inflating at most ``limit + 1`` bytes in total
    so that a small gzip bomb cannot expand in memory.

    Input goes in 64 KiB slices of one memoryview: zlib copies what follows a
    member's end into ``unused_data``, and handing it the whole rest each time
    made a body of many tiny members cost quadratic time on the event loop."""
    out = bytearray()
    view = memoryview(body)
    end = len(body.rstrip(b"\0"))  # trailing zero padding after the last member is allowed
    offset = 0
    for _ in range(MAX_GZIP_MEMBERS):
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        while not inflater.eof:
            if offset >= len(body):
                raise ApiError(400, "invalid_gzip", "request body is truncated gzip")
            chunk = view[offset:offset + _GZIP_CHUNK]
            offset += len(chunk)
            try:
                out += inflater.decompress(chunk, limit + 1 - len(out))
            except zlib.error as exc:
                raise ApiError(400, "invalid_gzip", f"request body is not valid gzip: {exc}") from None
            if len(out) > limit or inflater.unconsumed_tail:
                raise too_large(limit)
        offset -= len(inflater.unused_data)  # the next member starts where this one ended
        if offset >= end:
            return bytes(out)
    raise ApiError(400, "invalid_gzip", f"request body has more than {MAX_GZIP_MEMBERS} gzip members")


MAX_PATH = 8192
"""Longest path (decoded) a request may have: every id in a path fits (a pod's
or service's node id holds label values of up to 4,096 characters; others a
few hundred). Errors name the id, so an unbounded one was echoed back whole
(64 KB paths: 128 KB answers)."""


TOPOLOGY_PATHS = ("/api/v1/query/", "/api/v1/ws")
"""Where a path or query may hold a NUL character (``bound_path``): the
topology's reads, whose node ids and filters name what reports hold (a
pod's id holds label values, which may hold one), and which never reach the store."""


def bound_path(path: str, query: Any = None) -> None:
    """414 ``uri_too_long`` for a path beyond ``MAX_PATH``; 400 ``invalid_text``
    for a NUL character in the path or in a query parameter (``query``: the
    request's ``args``), but in the topology's (``TOPOLOGY_PATHS``).

    No id or filter the store holds has one, and PostgreSQL cannot take one
    as text at all: looked up, a deployment hash with ``%00`` in it crashed
    the directory actor, five such requests of any user's token the server."""
    if len(path) > MAX_PATH:
        raise ApiError(414, "uri_too_long", f"the path is {len(path)} characters long; at most {MAX_PATH}")
    if path.startswith(TOPOLOGY_PATHS):
        return
    if "\x00" in path:
        raise field_error("invalid_text", "path", "holds a NUL character (%00)")
    for name, value in query.items(multi=True) if query is not None else ():
        if "\x00" in name or "\x00" in value:
            shown = name.replace("\x00", "%00")[:64]
            raise field_error("invalid_text", shown, "holds a NUL character (%00)")


async def read_body(settings: Settings, *, limit: int | None = None) -> bytes:
    """The request body, decompressed (``read_body_and_raw``'s first part)."""
    return (await read_body_and_raw(settings, limit=limit))[0]


async def read_body_and_raw(settings: Settings, *, limit: int | None = None,
                            hold: contextlib.ExitStack | None = None) -> tuple[bytes, bytes]:
    """The request body decompressed, and as it came on the wire (signatures cover that).

    Args:
        limit: an endpoint's own limit, below ``server.max_body_size``: it
            applies while the body arrives (a chunked body has no length to
            refuse it by) and after decompression.
        hold: keep the body's bytes (its decompressed ones too) counted
            against the budgets of bodies being received until ``hold``
            closes, not only while it arrives: for a request that keeps its
            body while it waits (a large report waits for the one decode
            thread, and 150 valid 10 MB reports of one address all read
            and waiting held 1.5 GB).

    Raises:
        ApiError: 413 beyond the size limit (while it arrives, and after
            decompression), 415 for unknown content encodings, 408 when the
            body took longer than ``server.body_timeout`` to arrive, 503
            ``body_budget_exceeded`` when the bodies being received from its
            client address, or from all, would go beyond their budget.
    """
    if limit is None or limit >= settings.server.max_body_size:
        limit = settings.server.max_body_size
    if (request.content_length or 0) > limit:
        raise too_large(limit)  # before the budgets: a body that can never fit is no budget's to refuse
    with contextlib.ExitStack() as own:
        charge = (own if hold is None else hold).enter_context(_budgeted(request.content_length or 0))
        try:
            body = await _read_at_most(limit, settings.server.body_timeout, charge)
        except RequestTimeout:
            timeout = settings.server.body_timeout
            raise ApiError(408, "request_timeout",
                           f"the request body did not arrive within {format_duration(timeout)} (server.body_timeout)",
                           details={"timeout_seconds": timeout, "setting": "server.body_timeout"}) from None
    assert isinstance(body, bytes)
    g.body_read = True  # the connection can carry the next request (see _errors)
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding == "gzip":
        inflated = _gunzip(body, limit)
        if hold is not None:
            charge(len(inflated))
        return inflated, body
    if encoding not in ("identity", ""):
        raise ApiError(415, "unsupported_encoding",
                       f"Content-Encoding {encoding!r} is not supported; send identity or gzip")
    return body, body


BODY_RETRY_AFTER = 5
"""Seconds a client refused for the budgets of bodies being received waits:
bodies are received, or given up, within ``server.body_timeout``."""


async def _read_at_most(limit: int, timeout: float, charge: Callable[[int], None]) -> bytes:
    """The body as it arrives, refused (413 naming ``limit``) as soon as it
    passes ``limit``: Quart's own limit is the server's, and a chunked body
    was read whole up to it (10 MiB) before an endpoint's smaller one applied.

    Its bytes are counted (``charge``: ``_budgeted``'s) as they arrive. Kept
    in a ``BytesIO``, whose ``getvalue`` hands over its buffer (a body that
    came in one piece: that piece) rather than copy it, as ``bytes(bytearray)``
    did: a 10 MiB body took 20 MiB at its end."""
    if (request.content_length or 0) > limit:
        raise too_large(limit)
    body: io.BytesIO | None = None
    received = 0
    with trio.move_on_after(timeout) as scope:
        async for chunk in request.body:
            received += len(chunk)
            if received > limit:
                raise too_large(limit)
            charge(len(chunk))
            if body is None:
                body = io.BytesIO(chunk)  # shares the chunk, copied only if another follows
                body.seek(0, io.SEEK_END)
            else:
                body.write(chunk)
    if scope.cancelled_caught:
        raise RequestTimeout()
    return b"" if body is None else body.getvalue()


@contextlib.contextmanager
def _budgeted(declared: int) -> Iterator[Callable[[int], None]]:
    """Count the body's bytes as they arrive (the function yielded, given
    each piece's size) against its client's and the server's budgets of
    bodies being received (``ConnectionCounts.charge_body``), and give them
    back when the body is read, refused or given up (or, held, when its
    request is done with it: ``read_body_and_raw``'s ``hold``). Bytes counted, not a
    ``Content-Length`` reserved: what is counted is what the server holds, and
    a request's word for what it will send would let clients that send
    nothing use the budgets up. A body whose declared length does not fit now
    is refused before it is read, though.

    Raises:
        ApiError: 503 ``body_budget_exceeded`` with Retry-After, naming the setting.
    """
    admission = admission_of_app(current_app)
    if admission is None:  # an app without trioscope's services
        yield lambda size: None
        return
    counts = admission.counts
    held = counts.holder(request.remote_addr or "unknown")
    if not held.per_address:
        # A trusted proxy's request: unlike its connections, its body is one
        # client's, the one the proxy names (one client behind the proxy
        # could otherwise take the whole server's budget).
        held = Held(_client_address.client_source(), True)
    body = BodyRead(held)

    def charge(size: int, ahead: int = 0) -> None:
        refused = counts.charge_body(body, size, ahead)
        if refused is not None:
            told = admission.body_refused(body, refused)
            raise ApiError(503, "body_budget_exceeded", f"{told}; retry in {BODY_RETRY_AFTER} s", details={
                "setting": f"limits.{refused}",
                "limit_bytes": counts.body_per_address if refused == BODY_PER_ADDRESS else counts.body_total},
                headers={"Retry-After": str(BODY_RETRY_AFTER)})

    try:
        charge(0, declared)
        yield charge
    finally:
        counts.end_body(body)


def parse_json(body: bytes) -> Any:
    """The JSON document in ``body`` (``parse_object`` for an optional one).

    Raises:
        ApiError: 400 for empty or malformed bodies.
    """
    if not body.strip():
        raise ApiError(400, "empty_body", "request body is empty; expected a JSON object")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if _may_hold_long_integer(body):
        _check_integers(body)
    return document


_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0000000000")
_TWENTY_DIGITS = b"0" * 20
_MINUS_NINETEEN_DIGITS = b"-" + b"0" * 19
_NOT_A_DIGIT = re.compile(rb"[^0]")
"""In a folded body: where a run of digits ends."""
_BEFORE_A_VALUE = frozenset(b":,[ \t\r\n")
"""What may precede a JSON value (a number literal among them): the start of
the body aside. Digits after anything else are inside a string (a container
id's hex), or a literal's fraction or exponent."""


def _may_hold_long_integer(body: bytes) -> bool:
    """Whether ``body`` may hold an integer literal orjson turns into a float,
    silently (beyond -2^63..2^64-1 it parses integers as floats:
    99999999999999999999999 became 1e+23): a run of 20 digits, or ``-9`` and
    18 more, where a value may begin (the regular expression
    ``(?:^|[:,\\[ \\t\\r\\n])(?:-9\\d{18}|-?\\d{20})``). Rare, so only such bodies
    are looked at again (``_check_integers``). Runs within strings are not
    (1.3% of the bench's reports have a container id with 20 digits in a row,
    and the look again cost as much as the rest of their request).

    Every digit folded to ``0`` and the runs found by ``bytes.find``: ~30 us
    for a 36 KB report, where the regular expression took ~0.9 ms of the
    request path (it tries a match at every position)."""
    folded = body.translate(_DIGITS_AS_ZERO)
    # Each search starts where a run ended: what it finds is a run's first digit.
    start = folded.find(_TWENTY_DIGITS)
    while start != -1:
        if _value_starts(body, start - 1 if start > 0 and body[start - 1] == 0x2D else start):  # "-"
            return True
        end = _NOT_A_DIGIT.search(folded, start)
        start = -1 if end is None else folded.find(_TWENTY_DIGITS, end.start())
    start = folded.find(_MINUS_NINETEEN_DIGITS)
    while start != -1:
        if body[start + 1] == 0x39 and _value_starts(body, start):  # "9"
            return True
        start = folded.find(_MINUS_NINETEEN_DIGITS, start + 1)
    return False


def _value_starts(body: bytes, at: int) -> bool:
    """Whether a JSON value may begin at ``at``."""
    return at == 0 or body[at - 1] in _BEFORE_A_VALUE


_INT_RANGE = (-(2**63), 2**64 - 1)


class _OutOfRange:
    """Where ``json.loads`` met an integer literal orjson cannot keep exact."""


def _check_integers(body: bytes) -> None:
    """400 naming the field of an integer literal outside what orjson keeps exact.

    The standard library's parser calls ``parse_int`` for integer literals
    only (never for digits in strings), so the marker finds the field."""
    def parse_int(text: str) -> int | _OutOfRange:
        value = int(text)
        return value if _INT_RANGE[0] <= value <= _INT_RANGE[1] else _OutOfRange()

    try:
        path = _find(json.loads(body, parse_int=parse_int), "$")
    except RecursionError:
        return  # nested deeper than any field may be: refused by the decoders' depth rule
    if path is not None:
        path = path if len(path) <= 200 else path[:200] + "..."
        raise ApiError(400, "invalid_number", f"{path}: integers must be between -2^63 and 2^64-1 "
                       "(send larger numbers as strings)",
                       details={"errors": [{"path": path, "message": "integer out of range"}]})


def _find(value: Any, path: str) -> str | None:
    if isinstance(value, _OutOfRange):
        return path
    if isinstance(value, dict):
        children = ((f"{path}.{key}", item) for key, item in value.items())
    elif isinstance(value, list):
        children = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    for child_path, item in children:
        found = _find(item, child_path)
        if found is not None:
            return found
    return None


async def read_json(settings: Settings, *, limit: int | None = None) -> Any:
    """``parse_json(await read_body(settings, limit=limit))``."""
    return await off_loop(await read_body(settings, limit=limit), parse_json)


_JSON_KINDS: dict[type, str] = {list: "a list", str: "a string", bool: "a boolean", int: "a number",
                                float: "a number", type(None): "null"}


def parse_object(body: bytes) -> dict[str, Any]:
    """The JSON object in an optional ``body`` ({} if empty).

    Raises:
        ApiError: 400 ``invalid_body`` for any other JSON value (``[]``, ``0``,
            ``null``: none of them means "no options"), as ``parse_json`` for malformed JSON.
    """
    if not body.strip():
        return {}
    document = parse_json(body)
    if not isinstance(document, dict):
        kind = _JSON_KINDS.get(type(document), "another value")
        raise field_error("invalid_body", "$", f"must be a JSON object, got {kind}")
    return document


async def read_object(settings: Settings, *, limit: int | None = None) -> dict[str, Any]:
    """``parse_object(await read_body(settings, limit=limit))``."""
    return await off_loop(await read_body(settings, limit=limit), parse_object)


MAX_REPORTED_PROBLEMS = 100


def decoded(body: bytes, kind: type[T], code: str) -> T:
    """``body`` parsed (``parse_json``) and decoded as ``kind``; a 400 ``code``
    naming the bad fields (``invalid``). Raises ApiError only: it may run in a
    worker thread (``off_loop``)."""
    try:
        return decode(parse_json(body), kind)
    except InvalidDocument as exc:
        raise invalid(code, exc) from None


def invalid(code: str, exc: InvalidDocument) -> ApiError:
    """A 400 naming every bad field (up to a hundred)."""
    problems = [{"path": p.path, "message": p.message} for p in exc.problems[:MAX_REPORTED_PROBLEMS]]
    first = exc.problems[0]
    more = f" (and {len(exc.problems) - 1} more problems)" if len(exc.problems) > 1 else ""
    return ApiError(400, code, f"{first.path}: {first.message}{more}",
                    details={"errors": problems, "total": len(exc.problems)})



def refuse_unlisted_media(accepted: tuple[str, ...]) -> None:
    """415 ``unsupported_media_type`` for a request body whose Content-Type is
    none of ``accepted`` (a route's, as its API document lists them; JSON's
    ``application/*+json`` kinds too). A page in a browser sends a form's or
    ``fetch()``'s body as ``text/plain`` or a form type without asking the
    server first (no CORS preflight): read as JSON anyway, any web page a user
    of the network opened could post reports, registrations or heartbeats to
    an unprotected server. A body sent without a Content-Type (a script's) is
    read as the route reads bodies."""
    header = request.headers.get("Content-Type")
    if not header or request.method in ("GET", "HEAD"):
        return
    media = header.partition(";")[0].strip().lower()
    if media in accepted or (JSON in accepted and media.startswith("application/") and media.endswith("+json")):
        return
    raise ApiError(415, "unsupported_media_type", f"this route takes a body of {' or '.join(accepted)} "
                   f"(Content-Type), not {media[:100]!r}", details={"accepted": list(accepted)})
