"""How the probe takes the server's answers: which refusals are asked again
and how (``REFUSAL_RETRY``: signed again at once, with backoff, or only every
``REFUSED_RETRY`` seconds for what only an operator mends), the backoff
between attempts, the errors a request ends in, and how a loop follows the
server's answers (``Standing``: one log line per change). The report sender
(``_transport``) and the command agent (``_agent``) both use them."""

from __future__ import annotations

import email.utils
import enum
import logging
import math
import random
import re
import ssl
import time
import weakref
from collections import deque
from collections.abc import Callable

import attrs
import httpx
import trio

from trioscope.wire import shown_url

from ._answers import AnswerOverdue, json_of

log = logging.getLogger("trioscope_probe")

RETRIABLE = {408, 425, 429, 500, 502, 503, 504, 507}
"""Answers that time mends: sent again later (507: the server's disk is full,
or short of room for a large report; a final report refused so was dropped)."""
REFUSING = {401, 403, 404, 409, 410}
"""Answers that refuse the probe itself (or this signature of its), not one
report: wrong credentials or none (401, 403), a wrong ``--server`` path (404),
an agent id another enrolled agent reports under (409), a decommissioned agent
(410). ``REFUSAL_RETRY`` says which of them time mends."""
REFUSED_RETRY = 300.0
"""Seconds between attempts while refused for good: an operator's fix (a new
enrollment, the other probe gone) is noticed within minutes, without a request,
a log line and an audit record every interval."""
RESIGN_ATTEMPTS = 3
"""Sendings of one request while its signature alone is refused (``Retry.AT_ONCE``):
a request signed before a restart, or a request id seen, is mended by the
first new signature; a clock still behind the server's start is not, and the
request then waits as while the server is away."""


class Retry(enum.Enum):
    """How a refusal (``REFUSING``) is asked again."""

    AT_ONCE = enum.auto()
    """Newly signed (a new time, a new request id), up to ``RESIGN_ATTEMPTS``
    sendings in all; then with backoff."""
    BACKOFF = enum.auto()
    """As while the server is away: time mends it."""
    RARELY = enum.auto()
    """Every ``REFUSED_RETRY`` seconds: only an operator mends it."""


REFUSAL_RETRY: dict[tuple[int, str], Retry] = {
    # The server vouches for request ids only since it started: one signed
    # before then (a probe clock a second behind, a request in flight across
    # a restart) could be a replay. A new signature is taken.
    (401, "signed_before_start"): Retry.AT_ONCE,
    (401, "replayed_request"): Retry.AT_ONCE,
    # A clock more than five minutes off the server's: until it is set right.
    (401, "clock_skew"): Retry.BACKOFF,
    # A server that restarted has forgotten its probes (the publisher registers
    # again at once); past that, a replica that has not heard of it yet.
    (404, "agent_not_found"): Retry.BACKOFF,
}
"""How each (status, error code) of ``REFUSING`` is asked again; any other
(invalid_token, missing_signature, signature_required, wrong_deployment,
agent_id_taken, agent_decommissioned, a 404 of no trioscope route...) is
``Retry.RARELY`` (``retry_of``)."""


def retry_of(status: int, code: str) -> Retry:
    """How the refusal ``status`` with error ``code`` is asked again."""
    return REFUSAL_RETRY.get((status, code), Retry.RARELY)


NEVER_TAKEN = {400, 404, 409, 413, 422}
"""Statuses with which a trioscope server says a command's report itself will
never be taken (``report_refused_for_good``)."""


def report_refused_for_good(status: int, code: str) -> bool:
    """Whether the server said, in trioscope's own error body (``code``), that
    it will never take a command's report: 400 invalid_report, 404
    command_not_found, 409 report_conflict (the command timed out meanwhile),
    413. Any other answer leaves the report to be sent again: a proxy's page
    (no code), a 404 of no route (a wrong ``--server``, or another server), a
    redirect, refused credentials (401, 403, 410: an operator may mend them),
    a 404 agent_not_found (a server that restarted), 408, 5xx. A final report
    dropped on a proxy's 404 was lost for good, its command left to time out.
    A 413 is final whoever says it: a body too large for a proxy stays too
    large for it (kept, it was sent again at every start, for ever)."""
    if status == 413:
        return True
    return status in NEVER_TAKEN and bool(code) and code != "not_found" and (status, code) not in REFUSAL_RETRY


def report_taken(response: httpx.Response, command_id: str) -> bool:
    """Whether ``response`` is a trioscope server's taking of the report of
    ``command_id``: a 2xx with the JSON it always answers, whose ``item`` says
    ``accepted`` for that command (new, or a ``duplicate`` of one recorded). A
    2xx of anything else is not: a proxy or a captive portal answered 200 with
    its page, and the report, taken as delivered, was forgotten, its command
    left to time out although it had run."""
    if not response.is_success:
        return False
    try:
        item = json_of(response).get("item")
    except (ValueError, AttributeError):
        return False
    return isinstance(item, dict) and item.get("accepted") is True and bool(item.get("command_id") == command_id)


def answer_shown(response: httpx.Response) -> str:
    """What answered, for a log line: status, content type and the body's first bytes, on one line."""
    kind = _one_line(response.headers.get("Content-Type", ""), 100) or "no content type"
    start = _one_line(response.content[:120].decode("utf-8", "replace"), 120)
    return f"{response.status_code} {kind}: {start!r}" if start else f"{response.status_code} {kind}, empty"


@attrs.define
class Backoff:
    """Exponential with full jitter: the n-th wait is uniform in [0, min(cap, base * 2^n)]."""

    base: float = 1.0
    cap: float = 60.0
    attempts: int = 0
    rng: random.Random = attrs.field(factory=random.Random)

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** self.attempts)
        self.attempts += 1
        return max(0.2, self.rng.uniform(0, ceiling))

    def reset(self) -> None:
        self.attempts = 0


class ServerUnavailable(Exception):
    """The server cannot be reached or asks us to come back later."""


class Refused(Exception):
    """The server refuses this probe (one of ``REFUSING``); ``str()`` says why,
    ``retry`` how it is asked again."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}" if code else f"{status}: {message}")
        self.status = status
        self.code = code
        self.retry = retry_of(status, code)

    @property
    def for_good(self) -> bool:
        """Whether only an operator mends it (asked again every ``REFUSED_RETRY`` s)."""
        return self.retry is Retry.RARELY

    @property
    def plan(self) -> str:
        """How it is asked again, in words for a log line."""
        return f"asking again every {REFUSED_RETRY:g} s" if self.for_good else "retrying with backoff"


def error_of(response: httpx.Response) -> tuple[str, str]:
    """The error code and message of a trioscope error body; ("", the text) for
    another body (a proxy's page). Each on one line, as the probe logs them: a
    body's line breaks and control characters would let whatever answered
    write lines that look like the probe's own."""
    try:
        error = json_of(response).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return _one_line(error["code"], 100), _one_line(str(error.get("message", "")), 300)
    if 300 <= response.status_code < 400:
        return "", redirection(response)
    return "", _one_line(response.text, 300)


def redirection(response: httpx.Response) -> str:
    """Where a redirect (3xx) sends the probe, and the ``--server`` that says
    so. Never followed: the request would carry the agent token elsewhere,
    and a POST may arrive as a GET. An http:// proxy redirecting to https://
    is the usual case; its empty 301 was logged as "refused (301): "."""
    location = _one_line(response.headers.get("Location", ""), 300) or "no Location"
    path = response.request.url.path
    base = location.split("?", 1)[0].removesuffix(path) if path != "/" else ""
    hint = f"; use {base} as --server" if base and base != location.split("?", 1)[0] else ""
    return f"the server redirects to {location}{hint} (not followed)"


def error_text(response: httpx.Response) -> str:
    """``error_of`` for a log line or an error: ``code: message``, or another body's text."""
    code, message = error_of(response)
    return f"{code}: {message}" if code else message


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text[:limit * 2].split())
    return "".join(char if char.isprintable() else "?" for char in flat)[:limit]


def refusal(response: httpx.Response, what: str) -> Refused:
    """``response`` (one of ``REFUSING``) as a ``Refused`` naming ``what`` was refused,
    the server's error code and message; a 404 of no route names the URL asked."""
    code, message = error_of(response)
    if response.status_code == 404 and code in ("", "not_found"):
        # No such route: most likely a --server with a wrong path (or not a trioscope server).
        message = f"{message} ({shown_url(str(response.request.url.copy_with(query=None)))}: is --server right?)"
    return Refused(response.status_code, code, f"{what} refused: {message}")


_ANSWERED: weakref.WeakSet[httpx.AsyncClient] = weakref.WeakSet()
"""The clients the server answered (``send``) at least once (``has_answered``)."""


def has_answered(client: httpx.AsyncClient) -> bool:
    """Whether the server answered ``client`` before: a connection it drops
    then is a restart, not a sign that it speaks TLS (``transport_problem``)."""
    return client in _ANSWERED


_NOT_BEFORE: weakref.WeakKeyDictionary[httpx.AsyncClient, float] = weakref.WeakKeyDictionary()
"""When each client may send again (``trio.current_time``), where the server said ``Retry-After``."""


def retry_after(response: httpx.Response) -> float | None:
    """The seconds a 429, 503 or 507 answer asks the client to wait (``Retry-After``,
    seconds or an HTTP date), at most ``REFUSED_RETRY``; None if it asks nothing."""
    if response.status_code not in (429, 503, 507):
        return None
    value = response.headers.get("Retry-After", "").strip()
    try:
        if re.fullmatch(r"[0-9]{1,10}", value):  # ASCII digits only: str.isdigit takes "²", which float refuses
            seconds = float(value)
        else:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(seconds, 0.0), REFUSED_RETRY) or None


async def send(client: httpx.AsyncClient, build: Callable[[], httpx.Request]) -> httpx.Response:
    """``client.send(build())``; while the server refuses the request's
    signature alone (``Retry.AT_ONCE``), built (signed) and sent again at once,
    up to ``RESIGN_ATTEMPTS`` sendings in all. The last answer is returned.

    Not before the time a 429, 503 or 507 asked of this client (``Retry-After``,
    with up to 10% more so that probes told alike do not come back together):
    the loops' own backoff started at 1 s, and a server that asked for 60 s got
    18 requests in 15 s.

    Raises:
        httpx.TransportError: the server cannot be reached.
    """
    not_before = _NOT_BEFORE.get(client)
    if not_before is not None:
        await trio.sleep_until(not_before)
    response = await client.send(build())
    _ANSWERED.add(client)
    wait = retry_after(response)
    if wait is not None:
        _NOT_BEFORE[client] = trio.current_time() + wait * random.uniform(1.0, 1.1)  # noqa: S311 - jitter, not a secret
    for _ in range(RESIGN_ATTEMPTS - 1):
        if response.status_code not in REFUSING or retry_of(response.status_code, error_of(response)[0]) \
                is not Retry.AT_ONCE:
            break
        response = await client.send(build())
    return response


class Link(enum.Enum):
    """Whether the server answers one loop of the probe (a refusal is a
    ``Standing`` state of its own: its status and error code)."""

    CONNECTED = "connected"
    UNREACHABLE = "unreachable"
    """Away, busy (``RETRIABLE``), or answering what the loop cannot use."""


FLAP_WINDOW = 60.0
"""Seconds in which at most ``FLAP_LINES`` changes of ``Standing`` are said;
past that, one line a window at most, saying how many interruptions it held
back: a server refusing every other report got a line each way every cycle."""
FLAP_LINES = 2


@attrs.define
class Standing:
    """How the server last answered one loop of the probe (the publisher, the
    command poll): ``Link.CONNECTED``, ``Link.UNREACHABLE`` or a refusal's
    (status, code). The loop logs what ``note`` says to (with ``summary``) and
    waits ``delay()`` before asking again."""

    state: Link | tuple[int, str] | None = None
    """None before the first answer."""
    backoff: Backoff = attrs.field(factory=Backoff)
    said: Link | tuple[int, str] | None = attrs.field(init=False)
    """The state the last line said."""
    said_at: deque[float] = attrs.field(init=False, factory=lambda: deque(maxlen=FLAP_LINES))
    unsaid: int = attrs.field(init=False, default=0)
    """Changes since the last line."""
    interruptions: int = attrs.field(init=False, default=0)
    """Times the loop left ``Link.CONNECTED`` since the last line."""
    holding: bool = attrs.field(init=False, default=False)
    """Changes were held back: the next line waits a whole ``FLAP_WINDOW``."""
    summary: str = attrs.field(init=False, default="")
    """What the line ``note`` asked for says of the changes held back before it ("" if none)."""

    def __attrs_post_init__(self) -> None:
        self.said = self.state

    def note(self, state: Link | Refused, now: float) -> bool:
        """Enter ``state`` at ``now``; whether the loop logs it now: a change,
        or after changes held back (``FLAP_WINDOW``) the state they led to."""
        entered = (state.status, state.code) if isinstance(state, Refused) else state
        if entered != self.state:
            self.unsaid += 1
            if self.state is Link.CONNECTED:
                self.interruptions += 1
        self.state = entered
        if entered is Link.CONNECTED:
            self.backoff.reset()
        if self.unsaid == 0 or (entered == self.said and self.unsaid < 2):
            return False
        recent = [t for t in self.said_at if now - t < FLAP_WINDOW]
        if recent if self.holding else len(recent) >= FLAP_LINES:
            self.holding = True
            return False
        held = self.unsaid > 1
        self.summary = (f" ({self.interruptions} interruptions in the last {now - self.said_at[-1]:.0f} s)"
                        if held and self.said_at else "")
        self.holding = held
        self.said, self.unsaid, self.interruptions = entered, 0, 0
        self.said_at.append(now)
        return True

    def delay(self, at_most: float = math.inf) -> float:
        """Seconds before asking again: ``REFUSED_RETRY`` while refused for good,
        else the next backoff wait (at most ``at_most``); 0 while connected."""
        if self.state is Link.CONNECTED:
            return 0.0
        if isinstance(self.state, tuple) and retry_of(*self.state) is Retry.RARELY:
            return REFUSED_RETRY
        return min(self.backoff.next(), at_most)


def transport_problem(exc: httpx.TransportError, *, answered: bool = False) -> str:
    """A transport error in words, with the fix where one is likely
    (``answered``: the server answered this client before, so it speaks HTTP
    here and a dropped connection says nothing of TLS).

    httpx's timeouts say nothing of their own, and its TLS failures are an
    empty ``ConnectError`` whose reason, the ``ssl.SSLError``, sits two causes
    down (ConnectError <- BrokenResourceError <- SSLError): the chain is
    walked for it, and for the first cause that says anything."""
    if isinstance(exc, AnswerOverdue):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.TimeoutException):
        timeout = exc.request.extensions.get("timeout", {}) if _has_request(exc) else {}
        seconds = max((v for v in timeout.values() if isinstance(v, int | float)), default=None)
        return f"{type(exc).__name__}: timed out" + (f" after {seconds:g} s" if seconds is not None else "")
    causes = _causes(exc)
    tls = next((e for e in causes if isinstance(e, ssl.SSLError)), None)
    if tls is not None:
        return f"{type(exc).__name__}: {tls_problem(tls)}"
    reason = next((str(e) for e in causes if str(e)), "no reason given")
    hint = "" if answered else _maybe_tls_server(exc, causes)
    return f"{type(exc).__name__}: {reason.rstrip('.') if hint else reason}{hint}"


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it, outermost first (``__cause__``, else ``__context__``)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 16:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


_VERIFY_HINTS = {
    **dict.fromkeys((2, 18, 19, 20, 21), "give the server's CA (or its self-signed certificate) with --ca-file"),
    **dict.fromkeys((62, 64), "use a --server name or address the certificate holds"),
    9: "is this host's clock right?",
}
"""What to do about a certificate OpenSSL refused, by its verify code:
unknown issuer or self-signed (2, 18-21), a host name or IP address the
certificate does not hold (62, 64), not yet valid (9)."""
_NOT_TLS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL",
            "HTTP_REQUEST"}
"""OpenSSL's reasons when what answered the handshake is not TLS (a plain-HTTP server's answer)."""


def tls_problem(error: ssl.SSLError) -> str:
    """A failed TLS handshake in words, and what to do about it."""
    if isinstance(error, ssl.SSLCertVerificationError):
        hint = _VERIFY_HINTS.get(getattr(error, "verify_code", 0))  # no code 0: no hint
        said = (getattr(error, "verify_message", None) or _openssl_words(error)).rstrip(".")
        return f"certificate verify failed: {said}" + (f"; {hint}" if hint else "")
    reason = getattr(error, "reason", None)  # set by the ssl module only: one built in Python has none
    if reason in _NOT_TLS:
        return "the server does not speak TLS at this address; use http://"
    if isinstance(error, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
        return ("the server closed the connection during the TLS handshake (if it does not speak TLS at this "
                "address, use http://)")
    return f"TLS handshake failed: {_openssl_words(error)}"


def _openssl_words(error: ssl.SSLError) -> str:
    """OpenSSL's own words of ``error``, without ``[SSL: REASON]`` and ``(_ssl.c:1006)``."""
    said = [arg for arg in error.args[1:2] or error.args[:1] if isinstance(arg, str)]  # (errno, words) or (words,)
    text = said[0] if said else str(error)
    return re.sub(r"^\[[^]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", text) or str(getattr(error, "reason", None) or error)


def _maybe_tls_server(exc: httpx.TransportError, causes: list[BaseException]) -> str:
    """A hint that the server may want https://, for a plain http:// request the
    server dropped without an answer: a TLS server resets (or closes) a
    connection whose first bytes are no TLS handshake. Only a possibility: a
    plain server that restarts does the same (hence never once it answered:
    "if the server serves https" followed every restart of a plain one)."""
    if not (_has_request(exc) and exc.request.url.scheme == "http"):
        return ""
    reset = any(isinstance(e, ConnectionResetError | BrokenPipeError) for e in causes)
    unanswered = isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" in str(exc)
    if not (reset or unanswered):
        return ""
    return "; if the server serves https, use an https:// --server"


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018 - httpx raises RuntimeError when no request is attached
    except RuntimeError:
        return False
    return True
