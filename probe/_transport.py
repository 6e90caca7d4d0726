"""Sending reports: register once, then a report (gzip) and a heartbeat every
interval. While the server is away, reports wait in a bounded buffer (oldest
dropped first, counted) and retries back off exponentially with jitter
(``_refusals``: how each answer of the server is taken)."""

from __future__ import annotations

import gzip
import logging
import ssl
from collections import deque
from collections.abc import Callable

import attrs
import httpx
import orjson
import trio

from trioscope.wire import (
    Connection, ContainerInfo, LeftOut, ListeningPorts, MemoryBudget, ProcessInfo, Report, encode, is_connected,
    is_listener, shown_url, writable_json,
)

from . import _answers as answers
from ._answers import json_of
from ._refusals import (
    REFUSED_RETRY, REFUSING, RETRIABLE, Link, Refused, ServerUnavailable, Standing, error_of, error_text,
    has_answered, refusal, retry_after, send, transport_problem,
)
from ._signing import signed_request

log = logging.getLogger("trioscope_probe")

@attrs.define
class Outbox:
    """Reports not yet accepted by the server, oldest first (but the one
    being sent, taken out meanwhile: ``put_back`` if it was not taken)."""

    limit: int
    reports: deque[bytes] = attrs.field(factory=deque)
    dropped: int = 0

    def add(self, body: bytes) -> None:
        if len(self.reports) >= self.limit:
            self.reports.popleft()
            self.dropped += 1
        self.reports.append(body)

    def put_back(self, body: bytes) -> None:
        """``body``, the oldest, not taken: first again, or dropped (counted) if
        newer ones filled the outbox while it was being sent."""
        if len(self.reports) >= self.limit:
            self.dropped += 1
        else:
            self.reports.appendleft(body)


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
    """The report as gzip JSON, and how many connections, processes and
    containers were left out or cut short to fit ``limit`` bytes and the
    server's memory ``budget`` for one agent (None: the server has none; the
    report's ``left_out`` says how many of each): a
    host with hundreds of thousands of sockets or processes would otherwise
    send a report the server refuses, every time, host metrics and all.
    Processes that hold no socket go first (the least busy first: they make
    no edge), then connections (``_keeping``: listening sockets last), then the
    other processes (the least busy first), then what containers carry beyond
    their identity (label values cut to ``SHORT_LABEL``, environment and
    command; then labels), then containers (running ones last): 300 containers
    of ten 2 KiB labels were refused every time, the host with them; and with
    connections cut first, a host of 1,200 processes at the default budget was
    sent with no socket at all, every edge gone, for processes that made none."""
    limit -= min(REPORT_MARGIN, limit // 8)
    raw = report_json(report)
    processes_gone = connections_gone = 0
    listed = report.docker_info.containers if report.docker_info is not None else []
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
        holders = {c.pid for c in connections}
        if idle := [p for p in processes if p.pid not in holders]:
            report, gone = _without_least_busy(report, idle, len(processes) - int(len(processes) * share))
            processes_gone += gone
        elif connections:
            kept = sorted(connections, key=_keeping(connections))[:int(len(connections) * share)]
            connections_gone += len(connections) - len(kept)
            assert report.network_info is not None  # connections came from it
            # The host's connections metric counts what was found, not what is sent.
            found = report.network_info.sockets
            report = attrs.evolve(report, network_info=attrs.evolve(
                report.network_info, connections=kept, sockets=len(connections) if found is None else found))
        elif processes:
            report, gone = _without_least_busy(report, processes, len(processes) - int(len(processes) * share))
            processes_gone += gone
        elif (cut := _containers_cut(report, share)) is not None:
            report = cut
        else:
            break  # nothing left to cut: the server will say what is too large
        raw = report_json(report)
    sent = report.docker_info.containers if report.docker_info is not None else []
    containers_cut = 0
    if sent is not listed:  # each container cut short or left out counted once, however many steps it took
        kept_containers = {c.id: c for c in sent}
        containers_cut = sum(1 for c in listed if kept_containers.get(c.id) != c)
    dropped = processes_gone + connections_gone + containers_cut
    if dropped:
        # Said in the report too (a few dozen bytes, within the margin kept
        # above): the server shows it on the host's node.
        report = attrs.evolve(report, left_out=LeftOut(
            processes=processes_gone, connections=connections_gone, containers=containers_cut))
        raw = report_json(report)
    return gzip.compress(raw, compresslevel=5), dropped


def report_json(report: Report, option: int = 0) -> bytes:
    """The report as JSON (``option``: orjson's). The collectors make every
    string they read valid text (``os_text``); one that is not all the same (a
    lone surrogate, which JSON cannot hold: a source the collectors missed, or
    an engine's JSON escaping one) is sent with that surrogate written out
    (``\\udcff``), and said once for each field, not raised: orjson's
    TypeError stopped the probe at its first report, for good."""
    document = encode(report)
    try:
        return orjson.dumps(document, option=option)
    except orjson.JSONEncodeError:
        fields: set[str] = set()
        valid = writable_json(document, fields)
        if fields - _INVALID_SAID:
            log.warning("a report held text that is not valid UTF-8 (a lone surrogate) in %s: sent with it "
                        "written out (\\udcff); said once for each field", ", ".join(sorted(fields - _INVALID_SAID)))
            _INVALID_SAID.update(fields)
        return orjson.dumps(valid, option=option)


_INVALID_SAID: set[str] = set()
"""The fields ``report_json`` said held invalid text: each once in the probe's life."""


def _without_least_busy(report: Report, candidates: list[ProcessInfo], count: int) -> tuple[Report, int]:
    """``report`` without the ``count`` (at least one) least busy of
    ``candidates`` (by CPU, then memory), the others in their order; and how many went."""
    ranked = sorted(candidates, key=lambda p: (p.cpu_percent, p.memory_rss_bytes))
    gone = {p.pid for p in ranked[:max(1, min(count, len(ranked)))]}
    assert report.processes_info is not None  # the candidates came from it
    kept = [p for p in report.processes_info.processes if p.pid not in gone]
    return attrs.evolve(report, processes_info=attrs.evolve(report.processes_info, processes=kept)), len(gone)


def _keeping(connections: list[Connection]) -> Callable[[Connection], int]:
    """The order connections are kept in when some must go: listening sockets,
    then the client sides of connections (each an edge), then the server
    sides (their clients report the edge), then the rest (``TIME_WAIT``,
    ``CLOSE_WAIT``...: no edge). Cut by their order in the list, real edges
    went while thousands of accepted and closing sockets stayed."""
    listening = ListeningPorts()
    for c in connections:
        if is_listener(c.protocol, c.state, c.remote_address):
            listening.add(c.protocol, c.local_port, c.local_address)

    def rank(c: Connection) -> int:
        if is_listener(c.protocol, c.state, c.remote_address):
            return 0
        if not is_connected(c.protocol, c.state, c.remote_address):
            return 3
        return 2 if listening.serves(c.protocol, c.local_port, c.local_address) else 1

    return rank


SHORT_LABEL = 128
"""A container label's value as kept in a report cut to fit (compose, Kubernetes labels are shorter)."""


def _containers_cut(report: Report, share: float) -> Report | None:
    """``report`` with its containers' details cut one step further; None when
    they are bare already."""
    info = report.docker_info
    containers = info.containers if info is not None else []
    if not containers:
        return None

    def long(c: ContainerInfo) -> bool:
        return bool(c.env or c.env_names) or len(c.command) > SHORT_LABEL or any(
            len(v) > SHORT_LABEL for v in c.labels.values())

    if any(map(long, containers)):
        cut = [attrs.evolve(c, env={}, env_names=[], command=c.command[:SHORT_LABEL],
                            labels={k: v[:SHORT_LABEL] for k, v in c.labels.items()}) if long(c) else c
               for c in containers]
    elif any(c.labels for c in containers):
        cut = [attrs.evolve(c, labels={}) for c in containers]
    else:
        cut = sorted(containers, key=lambda c: c.state != "running")[:int(len(containers) * share)]
        if len(cut) == len(containers):
            return None
    assert info is not None  # containers came from it
    return attrs.evolve(report, docker_info=attrs.evolve(info, containers=cut))


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
            raise ServerUnavailable(transport_problem(exc, answered=has_answered(self.client))) from None
        if 300 <= response.status_code < 400:  # the server is elsewhere: reports wait as while it is away
            raise ServerUnavailable(f"{path} answered {response.status_code}: {error_text(response)}")
        if response.status_code in RETRIABLE:
            code = error_of(response)[0]  # bus_unavailable, database_unavailable...: why, when the server says
            wait = retry_after(response)
            raise ServerUnavailable(f"{path} answered {response.status_code}" + (f" {code}" if code else "")
                                    + (f", asking the probe to wait {wait:.0f} s" if wait else ""))
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
            config = json_of(response) if response.status_code == 200 else None
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
        if response.status_code >= 500:  # no trioscope (another server at --server), or a proxy's error
            raise ServerUnavailable(f"registration answered {response.status_code}: {error_text(response)}")
        if response.status_code != 201:
            log.error("registration refused (%s): %s", response.status_code, error_text(response))
        self.registered = True
        await self._learn_limits()

    async def flush(self) -> None:
        """Register if needed, then send the reports buffered, oldest first.

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
        for _ in range(len(self.outbox.reports)):  # those of now: the ones collected meanwhile go next round
            body = self.outbox.reports.popleft()  # out while it is sent: collection goes on adding
            try:
                response = await self._post("/api/v1/reports", content=body,
                                            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
                if response.status_code in REFUSING:
                    raise refusal(response, "report")
            except BaseException:  # not taken, or not known to be (a signal's cancellation too): first again
                self.outbox.put_back(body)
                raise
            if response.status_code != 202:
                # Not retriable (the server will not take this report): say why, once
                # while every report is refused alike, and move on.
                code, message = error_of(response)
                if (response.status_code, code) != self.refused_report:
                    log.error("report refused (%s%s): %s", response.status_code, f" {code}" if code else "", message)
                self.refused_report = (response.status_code, code)
            else:
                self.refused_report = None


ASKED_REPORT_GAP = 1.0
"""Seconds at least between a report asked for (``ReportRequests``) and the
collection before it: a burst of container controls gives one report a second
at most, however many end."""


class ReportRequests:
    """Reports asked for before the interval is out: the command agent asks
    once a container control has run, so that the topology shows the new
    state at once rather than at the next report. Measured against Podman with
    the default 15 s interval: a stop or start showed 0.0-0.3 s after the
    command completed (13.1-14.5 s before). Asks made before a collection
    starts are answered by it, together."""

    def __init__(self) -> None:
        self._asked = trio.Event()

    def ask(self) -> None:
        """Ask for a report soon (never blocks)."""
        self._asked.set()

    def answering(self) -> None:
        """A collection starts: it answers every ask made so far."""
        if self._asked.is_set():
            self._asked = trio.Event()

    async def wait(self, deadline: float) -> bool:
        """Wait until asked or until ``deadline`` (trio time); whether asked."""
        with trio.move_on_at(deadline):
            await self._asked.wait()
            return True
        return False


async def run_publisher(server: str, agent_id: str, hostname: str, interval: float, buffer: int,
                        collect: Callable[[], Report], *, metadata: dict[str, str] | None = None,
                        signer: Signer | None = None, tls: ssl.SSLContext | None = None,
                        transport: httpx.AsyncBaseTransport | None = None,
                        asked: ReportRequests | None = None) -> None:
    """Collect every ``interval`` seconds, and when ``asked`` no sooner than
    ``ASKED_REPORT_GAP`` after the collection before (the interval then starts
    again), into the outbox; and beside, send what it holds. Whatever the
    server does (away, slow, a ``Retry-After`` of minutes), collection keeps
    its interval and reports wait in the outbox, oldest dropped (counted): in
    one loop, a 429 with ``Retry-After: 120`` left a 122 s gap in the reports,
    and a server trickling its answer stopped them for good. ``tls`` verifies
    an https:// server (None: the system's authorities); ``transport``
    replaces the network (tests)."""
    async with answers.client(server, verify=tls or True, transport=transport) as client:
        publisher = Publisher(client, agent_id, hostname, buffer, metadata, signer)
        standing = Standing()
        collected = trio.lowlevel.ParkingLot()
        first_attempt = trio.Event()
        async with trio.open_nursery() as nursery:
            shown = shown_url(server)  # in log lines: without its password
            nursery.start_soon(_send, publisher, standing, shown, interval, collected, first_attempt)
            # The first report fits what the server takes, if it says so in time.
            with trio.move_on_after(interval):
                await first_attempt.wait()
            await _collect(publisher, standing, shown, collect, interval, asked, collected)


BEHIND = 3
"""Reports waiting in the outbox while the server answers, beyond which it is
said to take them more slowly than they are collected."""


async def _collect(publisher: Publisher, standing: Standing, server: str, collect: Callable[[], Report],
                   interval: float, asked: ReportRequests | None, collected: trio.lowlevel.ParkingLot) -> None:
    """Collect into ``publisher``'s outbox, forever (``run_publisher``); say
    once while connected (``standing``) that the server is behind."""
    trimming = behind = late = False
    failing: str | None = None
    """The failure of the last collection, said once with its traceback while it repeats."""
    while True:
        if asked is not None:
            asked.answering()
        collected_at = trio.current_time()
        try:
            # Abandoned on a signal: on a host with 200k sockets one collection takes a minute.
            report = await trio.to_thread.run_sync(collect, abandon_on_cancel=True)
        except Exception as exc:  # a bug of ours, or an answer of a shape we do not read: not the end
            if f"{type(exc).__name__}: {exc}" != failing:
                failing = f"{type(exc).__name__}: {exc}"
                log.error("collecting this host's report failed (%s); trying again every interval, said again "
                          "once it works or fails otherwise", failing, exc_info=exc)
        else:
            if failing is not None:
                failing = None
                log.info("collecting this host's report works again")
            body, dropped = encode_report(report, publisher.max_report_bytes, publisher.memory_budget)
            if dropped and not trimming:
                log.warning("this host's report is larger than the server takes (bytes, or memory per agent): "
                            "%d connections, processes or containers left out or cut short (processes without "
                            "sockets first, the least busy first; listening sockets and running containers kept "
                            "longest); raise the server's --agent-memory-budget or --max-body-size to send it "
                            "whole; said again once it fits", dropped)
            elif trimming and not dropped:
                log.info("the report fits again: nothing left out")
            trimming = bool(dropped)
            publisher.outbox.add(body)
            collected.unpark_all()
            if standing.state is not Link.CONNECTED:
                behind = False  # said again after the next "connected"
            elif len(publisher.outbox.reports) >= BEHIND and not behind:
                behind = True
                log.warning("server %s takes reports more slowly than they are collected (every %g s): they wait, "
                            "up to %d, the oldest dropped", server, interval, publisher.outbox.limit)
        # An interval from the start of this collection, so reports keep their
        # pace (an interval after its end, a host whose collection took 4 s
        # reported every 19 s for 15); one that took longer than the interval
        # is followed an interval after its end, so the probe's collecting
        # takes half a core at most, and says so.
        took = trio.current_time() - collected_at
        next_report = collected_at + interval if took < interval else trio.current_time() + interval
        if (took >= interval) != late:
            late = took >= interval
            if late:
                log.warning("collecting this host's report took %.1f s, longer than the interval (%g s): the next "
                            "report comes an interval after it ends; said again once it fits", took, interval)
            else:
                log.info("collecting this host's report fits the interval again (%.1f s)", took)
        if asked is not None and await asked.wait(next_report):
            next_report = min(next_report, max(trio.current_time(), collected_at + ASKED_REPORT_GAP))
        await trio.sleep_until(next_report)


async def _send(publisher: Publisher, standing: Standing, server: str, interval: float,
                collected: trio.lowlevel.ParkingLot, first_attempt: trio.Event) -> None:
    """Register, then send each report collected (``flush``), forever, one log
    line per change of ``Standing``; while the server is away or refuses,
    wait its backoff (at most an interval) or ``REFUSED_RETRY``.

    An unsigned probe whose agent id an enrolled probe reports under (401
    ``signature_required``) gives way: it says so once and asks again every
    ``REFUSED_RETRY`` (an audited refusal each time), since the id is free
    again once nothing signed reports under it for the server's stale
    threshold (it stopped for good: one signed report of any tenant's agent
    under the server's host name silenced its local probe until a restart).
    Other refusals are asked again as ``REFUSAL_RETRY`` says."""
    agent_id, buffer = publisher.agent_id, publisher.outbox.limit
    step = publisher.register  # then flush: "connected" is said once reports are answered
    while True:
        try:
            await step()
        except ServerUnavailable as exc:
            if standing.note(Link.UNREACHABLE, trio.current_time()):
                log.warning("server %s unreachable (%s); retrying with backoff, keeping up to %d reports%s",
                            server, exc, buffer, standing.summary)
        except Refused as exc:
            if publisher.signer is None and exc.code == "signature_required":
                if standing.note(exc, trio.current_time()):
                    log.warning("agent id %s is enrolled by a probe with credentials, which reports it: this "
                                "unsigned probe (the server's local probe, say) gives way, and asks again every "
                                "%g s (the id is free again once nothing signed reports under it for the "
                                "server's stale threshold); give it another --agent-id to report beside it",
                                agent_id, REFUSED_RETRY)
                publisher.registered = False
            elif standing.note(exc, trio.current_time()):
                log.error("server %s refuses agent %s (%s); %s, keeping up to %d reports%s",
                          server, agent_id, exc, exc.plan, buffer, standing.summary)
            if exc.for_good:
                publisher.registered = False  # whatever mends it (a new enrollment) needs a registration
        else:
            first_attempt.set()
            if step == publisher.flush and standing.note(Link.CONNECTED, trio.current_time()):
                refused = publisher.refused_report
                dropped = publisher.outbox.dropped
                log.log(logging.WARNING if refused else logging.INFO,
                        "connected to %s as agent %s%s%s%s", server, agent_id,
                        f" ({dropped} reports dropped while away or behind)" if dropped else "", "" if refused is None else
                        f", but its reports are refused ({refused[0]}{' ' + refused[1] if refused[1] else ''}: "
                        "said above)", standing.summary)
                publisher.outbox.dropped = 0  # counted again for the next time away
            step = publisher.flush
            if not publisher.outbox.reports:
                await collected.park()
            continue
        first_attempt.set()
        step = publisher.flush
        await trio.sleep(standing.delay(at_most=interval))
