"""Sending reports: register once, then a report (gzip) and a heartbeat every
interval. While the server is away, reports wait in a bounded buffer (oldest
dropped first, counted) and retries back off exponentially with jitter. How
the server's refusals are asked again (``REFUSAL_RETRY``: signed again at
once, with backoff, or only every ``REFUSED_RETRY`` seconds for what only an
operator mends) and how a loop of the probe follows the server's answers
(``Standing``: one log line per change) are here, for the command agent too."""

from __future__ import annotations

import contextlib
import enum
import gzip
import logging
import math
import random
import ssl
from collections import deque
from collections.abc import Callable

import attrs
import httpx
import orjson
import trio

from trioscope.wire import MemoryBudget, Report, encode

from ._signing import signed_request

log = logging.getLogger("trioscope_probe")

RETRIABLE = {408, 425, 429, 500, 502, 503, 504}
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
    """The error code and message of a trioscope error body; ("", the text) for another body."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return error["code"][:100], str(error.get("message", ""))[:300]
    return "", response.text[:300]


def refusal(response: httpx.Response, what: str) -> Refused:
    """``response`` (one of ``REFUSING``) as a ``Refused`` naming ``what`` was refused,
    the server's error code and message; a 404 of no route names the URL asked."""
    code, message = error_of(response)
    if response.status_code == 404 and code in ("", "not_found"):
        # No such route: most likely a --server with a wrong path (or not a trioscope server).
        message = f"{message} ({response.request.url.copy_with(query=None)}: is --server right?)"
    return Refused(response.status_code, code, f"{what} refused: {message}")


async def send(client: httpx.AsyncClient, build: Callable[[], httpx.Request]) -> httpx.Response:
    """``client.send(build())``; while the server refuses the request's
    signature alone (``Retry.AT_ONCE``), built (signed) and sent again at once,
    up to ``RESIGN_ATTEMPTS`` sendings in all. The last answer is returned.

    Raises:
        httpx.TransportError: the server cannot be reached.
    """
    response = await client.send(build())
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


@attrs.define
class Standing:
    """How the server last answered one loop of the probe (the publisher, the
    command poll): ``Link.CONNECTED``, ``Link.UNREACHABLE`` or a refusal's
    (status, code). The loop logs a change (``note``) and waits ``delay()``
    before asking again."""

    state: Link | tuple[int, str] | None = None
    """None before the first answer."""
    backoff: Backoff = attrs.field(factory=Backoff)

    def note(self, state: Link | Refused) -> bool:
        """Enter ``state``; whether it is a change (the loop then logs it)."""
        entered = (state.status, state.code) if isinstance(state, Refused) else state
        changed = entered != self.state
        self.state = entered
        if entered is Link.CONNECTED:
            self.backoff.reset()
        return changed

    def delay(self, at_most: float = math.inf) -> float:
        """Seconds before asking again: ``REFUSED_RETRY`` while refused for good,
        else the next backoff wait (at most ``at_most``); 0 while connected."""
        if self.state is Link.CONNECTED:
            return 0.0
        if isinstance(self.state, tuple) and retry_of(*self.state) is Retry.RARELY:
            return REFUSED_RETRY
        return min(self.backoff.next(), at_most)


def transport_problem(exc: httpx.TransportError) -> str:
    """A transport error in words: httpx's timeouts say nothing of their own."""
    if isinstance(exc, httpx.TimeoutException):
        timeout = exc.request.extensions.get("timeout", {}) if _has_request(exc) else {}
        seconds = max((v for v in timeout.values() if isinstance(v, int | float)), default=None)
        return f"{type(exc).__name__}: timed out" + (f" after {seconds:g} s" if seconds is not None else "")
    return f"{type(exc).__name__}: {str(exc) or 'no reason given'}"


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018 - httpx raises RuntimeError when no request is attached
    except RuntimeError:
        return False
    return True


@attrs.define
class Outbox:
    """Reports not yet accepted by the server, oldest first."""

    limit: int
    reports: deque[bytes] = attrs.field(factory=deque)
    dropped: int = 0

    def add(self, body: bytes) -> None:
        if len(self.reports) >= self.limit:
            self.reports.popleft()
            self.dropped += 1
        self.reports.append(body)


MAX_REPORT_BYTES = 10 * 1024 * 1024
"""The server's default ``--max-body-size`` (counted decompressed), until its
``/api/v1/agents/config`` says what it takes."""
REPORT_MARGIN = 64 * 1024
"""Room left under the limit (at most an eighth of it) for what the server counts differently."""
MEMORY_BUDGET = MemoryBudget(limit=4 * 1024 * 1024, history=3600.0, process_history=900.0)
"""The server's default ``--agent-memory-budget`` and metric history, until its
``/api/v1/agents/config`` says."""


def encode_report(report: Report, limit: int = MAX_REPORT_BYTES,
                  budget: MemoryBudget | None = MEMORY_BUDGET) -> tuple[bytes, int]:
    """The report as gzip JSON, and how many connections and processes were left
    out to fit ``limit`` bytes and the server's memory ``budget`` for one
    agent (None: the server has none): a host with hundreds of thousands of
    sockets or processes would otherwise send a report the server refuses,
    every time, host metrics and all. Connections go first (listening sockets
    last), then processes."""
    limit -= min(REPORT_MARGIN, limit // 8)
    raw = orjson.dumps(encode(report))
    dropped = 0
    while True:
        share = limit / len(raw)
        if budget is not None and share >= 1:
            # The same estimate the server makes of this very JSON.
            share = budget.limit / budget.footprint(report, len(raw)).bytes
        if share >= 1:
            break
        share *= 0.9
        connections = report.network_info.connections if report.network_info else []
        processes = report.processes_info.processes if report.processes_info else []
        if connections:
            # Either case: the probe's collector writes psutil's states lowercased ("listen").
            kept = sorted(connections, key=lambda c: c.state.upper() != "LISTEN")[:int(len(connections) * share)]
            dropped += len(connections) - len(kept)
            assert report.network_info is not None  # connections came from it
            report = attrs.evolve(report, network_info=attrs.evolve(report.network_info, connections=kept))
        elif processes:
            kept = processes[:int(len(processes) * share)]
            dropped += len(processes) - len(kept)
            assert report.processes_info is not None  # processes came from it
            report = attrs.evolve(report, processes_info=attrs.evolve(report.processes_info, processes=kept))
        else:
            break  # nothing left to cut: the server will say what is too large
        raw = orjson.dumps(encode(report))
    return gzip.compress(raw, compresslevel=5), dropped


@attrs.frozen
class Signer:
    """The enrolled agent credentials a probe signs its registration and reports
    with: they prove that its nodes belong to the agent's deployment (an
    unsigned report's nodes belong to none, and offer no controls)."""

    agent_id: str
    token: str = attrs.field(repr=False)


def stated_budget(config: dict[str, object]) -> MemoryBudget | None:
    """The memory budget a server's ``/api/v1/agents/config`` states; None if it
    states none (a server from before budgets); the default where it is damaged."""
    limit, history, process_history = (config.get(key) for key in (
        "memory_budget_bytes", "metric_history_seconds", "process_metric_history_seconds"))
    if limit is None:
        return None
    if not (type(limit) is int and 1024 <= limit <= 1024**4 and all(
            type(h) in (int, float) and 15 <= h <= 10 * 365 * 86400 for h in (history, process_history))):  # type: ignore[operator]  # type() excludes bool as isinstance would not, but narrows nothing for the checker
        return MEMORY_BUDGET
    return MemoryBudget(limit=limit, history=float(history), process_history=float(process_history))  # type: ignore[arg-type]  # numbers: checked by type() above


class Publisher:
    def __init__(self, client: httpx.AsyncClient, agent_id: str, hostname: str, buffer: int,
                 metadata: dict[str, str] | None = None, signer: Signer | None = None) -> None:
        self.client = client
        self.agent_id = agent_id
        self.hostname = hostname
        self.metadata = metadata or {}
        self.signer = signer
        self.outbox = Outbox(buffer)
        self.registered = False
        self.refused_report: tuple[int, str] | None = None
        """The last refusal of one report logged, until a report is taken."""
        self.max_report_bytes = MAX_REPORT_BYTES
        self.memory_budget: MemoryBudget | None = MEMORY_BUDGET

    async def _post(self, path: str, content: bytes | None = None, json: object = None,
                    headers: dict[str, str] | None = None) -> httpx.Response:
        if json is not None:
            content, headers = orjson.dumps(json), {**(headers or {}), "Content-Type": "application/json"}
        try:
            response = await send(self.client, lambda: self._request("POST", path, content, headers))
        except httpx.TransportError as exc:
            raise ServerUnavailable(transport_problem(exc)) from None
        if response.status_code in RETRIABLE:
            raise ServerUnavailable(f"{path} answered {response.status_code}")
        return response

    def _request(self, method: str, path: str, content: bytes | None = None,
                 headers: dict[str, str] | None = None) -> httpx.Request:
        """The request, signed with the agent credentials if the probe has them."""
        if self.signer is None:
            return self.client.build_request(method, path, content=content, headers=headers)
        return signed_request(self.client, method, path, agent_id=self.signer.agent_id, token=self.signer.token,
                              body=content or b"", headers=headers)

    async def _learn_limits(self) -> None:
        """The largest report the server takes (``max_report_bytes``) and the
        memory one agent's report may take there (``memory_budget_bytes``), if
        it says."""
        path = f"/api/v1/agents/config/{self.agent_id}"
        try:
            response = await send(self.client, lambda: self._request("GET", path))
            config = response.json() if response.status_code == 200 else None
        except (httpx.TransportError, ValueError):
            return  # the defaults stand; reports that do not fit are refused and logged
        if not isinstance(config, dict):
            return
        limit = config.get("max_report_bytes")
        if type(limit) is int and 4096 <= limit <= 1024**3 and limit != self.max_report_bytes:
            log.info("the server takes reports of up to %d bytes", limit)
            self.max_report_bytes = limit
        budget = stated_budget(config)
        if budget != self.memory_budget:
            log.info("the server takes up to %s bytes of memory per agent", budget.limit if budget else "any")
            self.memory_budget = budget

    async def register(self) -> None:
        """Register, and learn what the server takes, once.

        Raises:
            ServerUnavailable: try again with backoff.
            Refused: the server refuses this probe (registration is tried again
                with the next attempt).
        """
        if self.registered:
            return
        response = await self._post("/api/v1/agents/register",
                                    json={"agent_id": self.agent_id, "hostname": self.hostname,
                                          "metadata": self.metadata})
        if response.status_code in REFUSING:
            raise refusal(response, "registration")
        if response.status_code != 201:
            log.error("registration refused (%s): %s", response.status_code, response.text[:300])
        self.registered = True
        await self._learn_limits()

    async def flush(self) -> None:
        """Register if needed, then send every buffered report, oldest first.

        Raises:
            ServerUnavailable: try again with backoff (reports stay buffered).
            Refused: the server refuses this probe (reports stay buffered).
        """
        await self.register()
        heartbeat = f"/api/v1/agents/heartbeat/{self.agent_id}"
        response = await self._post(heartbeat)
        if response.status_code == 404 and error_of(response)[0] == "agent_not_found":
            # The server keeps probes in memory: one that restarted knows this
            # one again once it registers (or reports).
            self.registered = False
            await self.register()
            response = await self._post(heartbeat)
        if response.status_code in REFUSING:
            raise refusal(response, "heartbeat")
        while self.outbox.reports:
            response = await self._post("/api/v1/reports", content=self.outbox.reports[0],
                                        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
            if response.status_code in REFUSING:
                raise refusal(response, "report")
            if response.status_code != 202:
                # Not retriable (the server will not take this report): say why, once
                # while every report is refused alike, and move on.
                code, message = error_of(response)
                if (response.status_code, code) != self.refused_report:
                    log.error("report refused (%s%s): %s", response.status_code, f" {code}" if code else "", message)
                self.refused_report = (response.status_code, code)
            else:
                self.refused_report = None
            self.outbox.reports.popleft()


async def run_publisher(server: str, agent_id: str, hostname: str, interval: float, buffer: int,
                        collect: Callable[[], Report], *, cycles: int | None = None,
                        metadata: dict[str, str] | None = None, signer: Signer | None = None,
                        tls: ssl.SSLContext | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
    """Collect and publish every ``interval`` seconds (forever, or ``cycles`` times);
    ``tls`` verifies an https:// server (None: the system's authorities);
    ``transport`` replaces the network (tests).

    An unsigned probe whose agent id an enrolled probe reports under (401
    ``signature_required``) gives way: it says so once and stops reporting,
    since asking again would only add an audited refusal every few minutes
    while the enrolled probe reports the same host. Other refusals are asked
    again as ``REFUSAL_RETRY`` says."""
    standing = Standing()
    trimming = False
    async with httpx.AsyncClient(base_url=server, timeout=10.0, verify=tls or True, transport=transport) as client:
        publisher = Publisher(client, agent_id, hostname, buffer, metadata, signer)
        # Before the first report is encoded, so that it fits what the server
        # takes; a server that is away (or refuses) is registered with later.
        with contextlib.suppress(ServerUnavailable, Refused):
            await publisher.register()
        done = 0
        next_report = trio.current_time()
        while cycles is None or done < cycles:
            if trio.current_time() >= next_report:
                # Abandoned on a signal: on a host with 200k sockets one collection takes a minute.
                report = await trio.to_thread.run_sync(collect, abandon_on_cancel=True)
                body, dropped = encode_report(report, publisher.max_report_bytes, publisher.memory_budget)
                if dropped and not trimming:
                    log.warning("this host's report is larger than the server takes (bytes, or memory per agent): "
                                "%d connections and processes left out (listening sockets kept); said again once "
                                "it fits", dropped)
                elif trimming and not dropped:
                    log.info("the report fits again: nothing left out")
                trimming = bool(dropped)
                publisher.outbox.add(body)
                next_report = trio.current_time() + interval
                done += 1
            try:
                await publisher.flush()
            except ServerUnavailable as exc:
                if standing.note(Link.UNREACHABLE):
                    log.warning("server %s unreachable (%s); retrying with backoff, keeping up to %d reports",
                                server, exc, buffer)
            except Refused as exc:
                if signer is None and exc.code == "signature_required":
                    log.warning("agent id %s is enrolled by a probe with credentials, which reports it: this "
                                "unsigned probe (the server's local probe, say) stops reporting it; give it another "
                                "--agent-id to report beside it", agent_id)
                    return
                if standing.note(exc):
                    log.error("server %s refuses agent %s (%s); %s, keeping up to %d reports",
                              server, agent_id, exc, exc.plan, buffer)
                if exc.for_good:
                    publisher.registered = False  # whatever mends it (a new enrollment) needs a registration
            else:
                if standing.note(Link.CONNECTED):
                    log.info("connected to %s as agent %s (%d reports dropped while away)", server, agent_id,
                             publisher.outbox.dropped)
                if cycles is not None and done >= cycles:
                    return
                await trio.sleep_until(next_report)
                continue
            # A backoff wait ends by the report after next at the latest, so
            # that reports go on being collected (and buffered) meanwhile.
            await trio.sleep(standing.delay(at_most=max(0.2, next_report - trio.current_time()) + interval))
