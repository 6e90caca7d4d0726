"""The probe's publisher pieces: backoff, the outbox of unsent reports, and
reports fitted to the memory the server gives each agent."""

from __future__ import annotations

import gzip
import logging
import random
from datetime import UTC, datetime
from typing import Any

import attrs
import httpx
import orjson
import pytest
import trio

from tests.synthetic import host_report
from trioscope.domain.agents import host_metrics
from trioscope.wire import LeftOut, MemoryBudget, ProcessesInfo, ProcessInfo, Report, decode_report, encode
from trioscope_probe import _transport
from trioscope_probe._refusals import (
    REFUSED_RETRY, RESIGN_ATTEMPTS, Backoff, Link, Refused, Standing, send, transport_problem,
)
from trioscope_probe._transport import (
    MEMORY_BUDGET, Outbox, Signer, encode_report, report_json, run_publisher, stated_budget,
)


class _Extreme(random.Random):
    """Draws the top (or the bottom) of every range: the waits show the backoff's bounds."""

    def __init__(self, top: bool) -> None:
        super().__init__(0)
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self.top else a


def test_backoff_grows_exponentially_within_a_cap_and_resets() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=_Extreme(top=True))
    assert [backoff.next() for _ in range(6)] == [1, 2, 4, 8, 8, 8]  # the ceilings double up to the cap
    backoff.reset()
    assert backoff.attempts == 0 and backoff.next() == 1.0


def test_backoff_waits_at_least_a_fifth_of_a_second() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=_Extreme(top=False))
    assert [backoff.next() for _ in range(3)] == [0.2, 0.2, 0.2]


def test_backoff_is_jittered() -> None:
    waits = {Backoff(base=1.0, cap=60.0, attempts=5, rng=random.Random(seed)).next() for seed in range(20)}
    assert len(waits) > 10


def test_outbox_drops_the_oldest_and_counts_them() -> None:
    outbox = Outbox(limit=3)
    for n in range(5):
        outbox.add(bytes([n]))
    assert list(outbox.reports) == [b"\x02", b"\x03", b"\x04"] and outbox.dropped == 2


def sent(body: bytes) -> tuple[bytes, dict]:
    raw = gzip.decompress(body)
    return raw, orjson.loads(raw)


@pytest.mark.parametrize(("processes", "connections"), [(100, 3000), (1000, 300), (3000, 300)])
def test_a_report_over_the_memory_budget_leaves_idle_processes_out_then_connections_then_the_rest(
        processes: int, connections: int) -> None:
    """Connections went first: a host of 1,200 processes at the default budget
    was sent with no socket, every edge gone, for processes that made none."""
    budget = MemoryBudget(limit=1024**2, history=3600.0, process_history=900.0)
    report = decode_report(host_report(1, timestamp=1_800_000_000.0, containers=4, processes=processes,
                                       connections=connections, peers=[2, 3, 4, 5]))
    listening = [c for c in report.network_info.connections if c.state == "LISTEN"]
    holders = {c.pid for c in report.network_info.connections}
    idle = [p for p in report.processes_info.processes if p.pid not in holders]
    assert bool(idle) == (processes > connections)
    body, dropped = encode_report(report, budget=budget)
    raw, document = sent(body)
    fitted = decode_report(document)
    # What the server will estimate of this very body fits.
    assert budget.footprint(fitted, len(raw)).bytes <= budget.limit
    kept_connections, kept_processes = fitted.network_info.connections, fitted.processes_info.processes
    assert dropped == connections + processes - len(kept_connections) - len(kept_processes) > 0
    # The report says what went, by kind (the server shows it on the host's node).
    assert fitted.left_out == LeftOut(processes=processes - len(kept_processes),
                                      connections=connections - len(kept_connections), containers=0)
    # The host's processes and connections metrics count what the probe found, not what it sent.
    assert host_metrics(fitted)["processes"] == host_metrics(report)["processes"] == processes
    assert host_metrics(fitted)["connections"] == host_metrics(report)["connections"] == connections
    kept_pids = {p.pid for p in kept_processes}
    gone_idle = [p for p in idle if p.pid not in kept_pids]
    kept_idle = [p for p in idle if p.pid in kept_pids]
    # The least busy went first.
    assert all((p.cpu_percent, p.memory_rss_bytes) <= (q.cpu_percent, q.memory_rss_bytes)
               for p in gone_idle for q in kept_idle)
    if len(kept_connections) < connections:  # sockets only once no idle process is left
        assert kept_idle == []
    assert {c.pid for c in kept_connections} <= kept_pids  # a socket sent is its process's
    if processes > connections:  # idle processes made the room: every listener stays
        assert set(listening) <= set(kept_connections)
    # What was found, cut or not: the host's connections metric counts it.
    assert fitted.network_info.sockets == (connections if len(kept_connections) < connections else None)
    assert kept_processes == [p for p in report.processes_info.processes if p.pid in kept_pids]  # in their order


def test_listening_sockets_stay_as_the_collector_names_them() -> None:
    # The probe's collector writes psutil's states in lower case ("listen"), in
    # the kernel's order: here the listeners last.
    budget = MemoryBudget(limit=1024**2, history=3600.0, process_history=900.0)
    report = decode_report(host_report(1, timestamp=1_800_000_000.0, containers=4, processes=100,
                                       connections=3000, peers=[2, 3, 4, 5]))
    report = attrs.evolve(report, network_info=attrs.evolve(report.network_info, connections=[
        attrs.evolve(c, state=c.state.lower()) for c in reversed(report.network_info.connections)]))
    listening = [c for c in report.network_info.connections if c.state == "listen"]
    kept = decode_report(sent(encode_report(report, budget=budget)[0])[1]).network_info.connections
    assert listening and set(listening) <= set(kept) and len(kept) < 3000


def test_client_connections_are_kept_before_the_sockets_that_make_no_edge() -> None:
    """Cut by their order in the list, real edges went while thousands of
    accepted (server side) and closing sockets, which make none, stayed."""
    budget = MemoryBudget(limit=1024**2, history=3600.0, process_history=900.0)
    report = decode_report(host_report(1, timestamp=1_800_000_000.0, containers=4, processes=100,
                                       connections=0, peers=[]))
    listener = {"protocol": "tcp", "local_address": "0.0.0.0", "local_port": 8080, "state": "LISTEN", "pid": 1}
    noise = [{"protocol": "tcp", "local_address": "10.0.0.1", "local_port": 8080, "remote_address": f"10.{1 + i // 62500}.{i // 250 % 250}.{i % 250}",
              "remote_port": 40000 + i, "state": "ESTABLISHED" if i % 2 else "TIME_WAIT", "pid": 1} for i in range(20000)]
    clients = [{"protocol": "tcp", "local_address": "10.0.0.1", "local_port": 50000 + i, "remote_address": f"10.2.0.{i}",
                "remote_port": 5432, "state": "ESTABLISHED", "pid": 2} for i in range(40)]
    document = orjson.loads(orjson.dumps(encode(report)))
    document["network_info"] = {"connections": [listener, *noise, *clients]}  # the clients last, as a kernel may list them
    report = decode_report(document)
    kept = decode_report(sent(encode_report(report, budget=budget)[0])[1]).network_info.connections
    assert len(kept) < 20041
    assert {c.remote_address for c in kept if c.local_port >= 50000} == {f"10.2.0.{i}" for i in range(40)}
    assert any(c.local_port == 8080 and c.state == "LISTEN" for c in kept)


def test_a_report_within_the_budget_or_with_no_budget_is_sent_whole() -> None:
    report = decode_report(host_report(1, timestamp=1_800_000_000.0, processes=3000, connections=10, peers=[2]))
    assert encode_report(report)[1] > 0  # over the default budget
    body, dropped = encode_report(report, budget=None)
    assert dropped == 0 and len(sent(body)[1]["processes_info"]["processes"]) == 3000
    assert sent(body)[1]["left_out"] is None  # whole: nothing said
    small = decode_report(host_report(1, timestamp=1_800_000_000.0, processes=50, connections=100, peers=[2]))
    assert encode_report(small)[1] == 0


def test_the_budget_is_learned_from_what_the_server_states() -> None:
    assert stated_budget({"memory_budget_bytes": 2 * 1024**2, "metric_history_seconds": 7200,
                          "process_metric_history_seconds": 900.0}) == MemoryBudget(
        limit=2 * 1024**2, history=7200.0, process_history=900.0)
    assert stated_budget({"max_report_bytes": 1024**2}) is None  # a server from before budgets


@pytest.mark.parametrize("damaged", [
    {"memory_budget_bytes": "4MiB"}, {"memory_budget_bytes": True}, {"memory_budget_bytes": 4096},
    {"memory_budget_bytes": 1024**2, "metric_history_seconds": "1h", "process_metric_history_seconds": 900},
    {"memory_budget_bytes": 1024**2, "metric_history_seconds": float("nan"), "process_metric_history_seconds": 9},
])
def test_a_damaged_budget_keeps_the_default(damaged: dict) -> None:
    assert stated_budget(damaged) == MEMORY_BUDGET


class _Server:
    """An httpx transport answering every request with one status (and the
    server's error body), counting what was asked."""

    def __init__(self, status: int, code: str) -> None:
        self.status, self.code = status, code
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path.startswith("/api/v1/agents/config"):
            return httpx.Response(404)
        return httpx.Response(self.status, json={"error": {"code": self.code, "message": f"{self.code} here"}})


def _report() -> Any:
    return decode_report(host_report(1, timestamp=1_800_000_000.0, processes=5, connections=5, peers=[2]))


async def _publish_for(seconds: float, server: _Server, signer: Signer | None,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    async def inline(function: Any, *args: Any, **_: Any) -> Any:
        return function(*args)  # the mock clock would jump while a worker thread collects

    monkeypatch.setattr(trio.to_thread, "run_sync", inline)
    with trio.move_on_after(seconds):
        await run_publisher("http://server", "probe-1", "host", 15.0, 40, _report, signer=signer,
                            transport=httpx.MockTransport(server))


@pytest.mark.parametrize(("status", "code"), [
    (410, "agent_decommissioned"), (404, ""), (401, "unknown_agent"), (401, "invalid_token"),
    (403, "wrong_deployment"), (409, "agent_id_taken"), (401, "missing_signature")])
async def test_a_refusal_is_logged_once_and_asked_again_rarely(
        status: int, code: str, autojump_clock: Any, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A decommissioned agent, a wrong --server path: an ERROR per interval for
    ever, and "connected" after each refused report."""
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    server = _Server(status, code)
    await _publish_for(3600, server, Signer("agent-1", "t"), monkeypatch)
    messages = [r.getMessage() for r in caplog.records]
    refused = [m for m in messages if "refuses agent probe-1" in m]
    assert len(refused) == 1 and f"asking again every {REFUSED_RETRY:g} s" in refused[0], messages
    assert not any("connected" in m for m in messages), messages
    registrations = server.paths.count("/api/v1/agents/register")
    assert 3600 / REFUSED_RETRY <= registrations <= 3600 / REFUSED_RETRY + 2, server.paths
    assert "/api/v1/reports" not in server.paths  # the heartbeat (or registration) is refused first


@pytest.mark.parametrize("code", ["clock_skew", "signed_before_start", "replayed_request"])
async def test_a_refusal_that_time_mends_is_logged_once_and_asked_again_with_backoff(
        code: str, autojump_clock: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock off, a request signed before the server's start: these waited
    REFUSED_RETRY, as a decommissioned agent does."""
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    server = _Server(401, code)
    await _publish_for(REFUSED_RETRY, server, Signer("agent-1", "t"), monkeypatch)
    refused = [r.getMessage() for r in caplog.records if "refuses agent probe-1" in r.getMessage()]
    assert len(refused) == 1 and "retrying with backoff" in refused[0], refused
    # Backoff waits are capped by the report interval (15 s): about 20 rounds in REFUSED_RETRY, not one.
    assert server.paths.count("/api/v1/agents/register") > 10, server.paths


def test_standing_says_each_change_once_and_how_long_to_wait() -> None:
    standing = Standing(backoff=Backoff(base=1.0, cap=8.0, rng=_Extreme(top=True)))
    skew = Refused(401, "clock_skew", "off")
    assert [standing.note(skew, 0), standing.note(skew, 1)] == [True, False]
    assert [standing.delay(), standing.delay(), standing.delay(at_most=3.0)] == [1.0, 2.0, 3.0]
    retired = Refused(410, "agent_decommissioned", "gone")
    assert standing.note(retired, 100) and standing.delay() == standing.delay(at_most=1.0) == REFUSED_RETRY
    assert standing.note(Refused(401, "invalid_token", "no"), 200) and standing.delay() == REFUSED_RETRY
    assert [standing.note(Link.UNREACHABLE, 300), standing.note(Link.UNREACHABLE, 301)] == [True, False]
    assert [standing.note(Link.CONNECTED, 400), standing.note(Link.CONNECTED, 401)] == [True, False]
    assert standing.backoff.attempts == 0  # an answer starts the backoff over


def test_refusals_say_how_they_are_asked_again() -> None:
    assert [Refused(401, code, "").for_good for code in ("clock_skew", "signed_before_start", "replayed_request")] \
        == [False, False, False]
    assert all(Refused(status, code, "").for_good for status, code in [
        (401, "invalid_token"), (401, "missing_token"), (401, "invalid_signature"), (401, "signature_required"),
        (403, "wrong_deployment"), (404, ""), (409, "agent_id_taken"), (410, "agent_decommissioned")])
    assert Refused(401, "clock_skew", "").plan == "retrying with backoff"
    assert Refused(410, "agent_decommissioned", "").plan == f"asking again every {REFUSED_RETRY:g} s"


@pytest.mark.parametrize(("refusals", "sent"), [(1, 2), (RESIGN_ATTEMPTS + 2, RESIGN_ATTEMPTS)])
async def test_a_refused_signature_is_signed_again_at_once_a_few_times(refusals: int, sent: int) -> None:
    nonces: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        nonces.append(request.headers["X-Request-Nonce"])
        if len(nonces) <= refusals:
            return httpx.Response(401, json={"error": {"code": "signed_before_start", "message": "sign again"}})
        return httpx.Response(202)

    counter = iter(range(100))
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://server") as client:
        response = await send(client, lambda: client.build_request(
            "POST", "/x", headers={"X-Request-Nonce": str(next(counter))}))
    assert len(nonces) == sent and len(set(nonces)) == sent  # each sending built (signed) anew
    assert response.status_code == (202 if refusals < RESIGN_ATTEMPTS else 401)


async def test_an_unsigned_probe_gives_way_to_an_enrolled_one_under_its_agent_id_and_asks_again_rarely(
        autojump_clock: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's local probe on a host whose enrolled probe took the same id
    (the hostname): 401 every interval, and two audited refusals each time. It
    stopped for good, so one signed report of anyone's agent under its id
    silenced it until a restart; the id is free again once the signer stops."""
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    server = _Server(401, "signature_required")
    await _publish_for(3600, server, None, monkeypatch)
    (said,) = [r.getMessage() for r in caplog.records]
    assert "agent id probe-1 is enrolled by a probe with credentials" in said
    assert f"gives way, and asks again every {REFUSED_RETRY:g} s" in said
    registrations = server.paths.count("/api/v1/agents/register")
    assert 3600 / REFUSED_RETRY - 1 <= registrations <= 3600 / REFUSED_RETRY + 2, server.paths
    assert "/api/v1/reports" not in server.paths


def test_a_timeout_says_how_long_was_waited() -> None:
    request = httpx.Request("GET", "http://server/x", extensions={"timeout": {"connect": 10.0, "read": 10.0}})
    assert transport_problem(httpx.ReadTimeout("", request=request)) == "ReadTimeout: timed out after 10 s"
    assert transport_problem(httpx.ConnectError("")) == "ConnectError: no reason given"


async def test_a_collection_that_fails_is_said_and_the_next_interval_reports(
        autojump_clock: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine answer of a shape the probe does not read raised out of the
    collection and ended the probe (a reviewer's fake engine)."""
    reports: list[bytes] = []
    calls = 0

    def collect() -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise AttributeError("'list' object has no attribute 'items'")
        return _report()

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/reports":
            reports.append(request.content)
            return httpx.Response(202, json={})
        if request.url.path.startswith("/api/v1/agents/config"):
            return httpx.Response(404)
        return httpx.Response(200, json={})  # registration, heartbeats

    async def inline(function: Any, *args: Any, **_: Any) -> Any:
        return function(*args)

    monkeypatch.setattr(trio.to_thread, "run_sync", inline)
    with trio.move_on_after(40):
        await run_publisher("http://server", "probe-1", "host", 15.0, 40, collect, transport=httpx.MockTransport(server))
    assert calls >= 3 and len(reports) == calls - 1
    assert any("collecting this host's report failed (AttributeError" in r.getMessage() for r in caplog.records)


async def test_a_collection_failing_every_interval_is_said_once_with_its_traceback(
        autojump_clock: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreadable /proc file wrote a 34-line traceback every interval."""
    calls = 0

    def collect() -> Any:
        nonlocal calls
        calls += 1
        if calls <= 4:
            raise PermissionError(13, "Permission denied")
        return _report()

    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404 if request.url.path.startswith("/api/v1/agents/config") else 202, json={})

    async def inline(function: Any, *args: Any, **_: Any) -> Any:
        return function(*args)

    monkeypatch.setattr(trio.to_thread, "run_sync", inline)
    caplog.set_level(logging.INFO)
    with trio.move_on_after(80):
        await run_publisher("http://server", "probe-1", "host", 15.0, 40, collect, transport=httpx.MockTransport(server))
    assert calls >= 5
    said = [r for r in caplog.records if "collecting this host's report" in r.getMessage()]
    assert [r.getMessage() for r in said] == [
        "collecting this host's report failed (PermissionError: [Errno 13] Permission denied); trying again every "
        "interval, said again once it works or fails otherwise", "collecting this host's report works again"]
    assert said[0].exc_info is not None


async def test_connected_while_its_reports_are_refused_says_so(
        autojump_clock: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """"connected to ..." followed a 413 at every cycle, as if all were well (a reviewer's)."""
    caplog.set_level(logging.INFO, logger="trioscope_probe")

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/reports":
            return httpx.Response(413, json={"error": {"code": "memory_budget_exceeded", "message": "too large"}})
        if request.url.path.startswith("/api/v1/agents/config"):
            return httpx.Response(404)
        return httpx.Response(200, json={})

    async def inline(function: Any, *args: Any, **_: Any) -> Any:
        return function(*args)

    monkeypatch.setattr(trio.to_thread, "run_sync", inline)
    with trio.move_on_after(40):
        await run_publisher("http://server", "probe-1", "host", 15.0, 40, _report,
                            transport=httpx.MockTransport(server))
    said = [r.getMessage() for r in caplog.records if "connected to" in r.getMessage()]
    assert said and all("but its reports are refused (413 memory_budget_exceeded" in m for m in said), said


class _Trickle(httpx.AsyncByteStream):
    """An answer a byte every 5 s, for ever: each read within any read timeout."""

    async def __aiter__(self) -> Any:
        while True:
            yield b" "
            await trio.sleep(5)


async def _collections_while(server: Any, seconds: float, monkeypatch: pytest.MonkeyPatch, buffer: int = 500) -> int:
    """Collections of a publisher (every 2 s, keeping ``buffer`` reports) of ``server`` over ``seconds``."""
    collections = 0

    def collect() -> Any:
        nonlocal collections
        collections += 1
        return _report()

    async def inline(function: Any, *args: Any, **_: Any) -> Any:
        return function(*args)

    monkeypatch.setattr(trio.to_thread, "run_sync", inline)
    with trio.move_on_after(seconds):
        await run_publisher("http://server", "probe-1", "host", 2.0, buffer, collect,
                            transport=httpx.MockTransport(server))
    return collections


@pytest.mark.parametrize(("first", "said"), [
    (httpx.Response(429, headers={"Retry-After": "120"}, json={"error": {"code": "rate_limited"}}),
     "/api/v1/reports answered 429 rate_limited, asking the probe to wait 120 s"),
    (httpx.Response(202, stream=_Trickle()), "AnswerOverdue: no whole answer within 60 s"),
], ids=["retry-after", "trickling"])
async def test_reports_are_collected_every_interval_whatever_the_server_answers_one(
        first: httpx.Response, said: str, autojump_clock: Any, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Collection waited on sending: one 429 Retry-After: 120 left a 122 s gap
    in the reports, and an answer trickled a byte every 5 s stopped them for
    good, without a line logged (a reviewer's)."""
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    reports: list[bytes] = []

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/reports":
            reports.append(request.content)
            return first if len(reports) == 1 else httpx.Response(202, json={})
        if request.url.path.startswith("/api/v1/agents/config"):
            return httpx.Response(404)
        return httpx.Response(201 if request.url.path.endswith("/register") else 200, json={})

    collections = await _collections_while(server, 300, monkeypatch)
    assert collections >= 300 / 2 - 2  # every 2 s, as if the server had answered at once
    assert len(reports) >= collections - 2  # each kept while the server held one, and sent
    assert any(said in r.getMessage() and "unreachable" in r.getMessage() for r in caplog.records), caplog.text


async def test_a_registration_at_start_asked_to_wait_is_said_and_reports_are_collected_meanwhile(
        autojump_clock: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """One 503 Retry-After: 3600 to the first registration, the server healthy
    after: the probe was silent for 320 s (the start-up registration's failure
    was not said), and collected nothing meanwhile (a reviewer's)."""
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    registrations: list[float] = []
    reports: list[bytes] = []

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/register"):
            registrations.append(trio.current_time())
            if len(registrations) == 1:
                return httpx.Response(503, headers={"Retry-After": "3600"}, json={"error": {"code": "unavailable"}})
            return httpx.Response(201, json={})
        if request.url.path == "/api/v1/reports":
            reports.append(request.content)
            return httpx.Response(202, json={})
        return httpx.Response(404 if "config" in request.url.path else 200, json={})

    collections = await _collections_while(server, 400, monkeypatch)
    said = [r.getMessage() for r in caplog.records]
    assert any("unreachable (/api/v1/agents/register answered 503 unavailable, asking the probe to wait 300 s)"
               in m for m in said), said
    assert len(registrations) == 2 and registrations[1] - registrations[0] >= 300  # as the server asked
    assert collections >= 400 / 2 - 2 and len(reports) >= collections - 2


async def test_a_server_slower_than_collection_is_said_once_and_collection_keeps_its_interval(
        autojump_clock: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server answering each request in 5 s (under the timeout) cut reporting
    from every 2 s to every 10 s, without a line logged (a reviewer's)."""
    caplog.set_level(logging.INFO, logger="trioscope_probe")

    async def server(request: httpx.Request) -> httpx.Response:
        await trio.sleep(5)
        if request.url.path.startswith("/api/v1/agents/config"):
            return httpx.Response(404)
        return httpx.Response(202 if request.url.path == "/api/v1/reports" else 201, json={})

    collections = await _collections_while(server, 300, monkeypatch)
    assert collections >= 300 / 2 - 5
    said = [r.getMessage() for r in caplog.records if "more slowly than they are collected" in r.getMessage()]
    assert len(said) == 1, caplog.text


async def test_a_redirecting_server_is_named_with_its_location_and_reports_wait_for_it(
        autojump_clock: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """An http:// proxy answering 301 to https://: "registration refused (301): "
    (its body empty), and every report was refused and dropped (a reviewer's)."""
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    taken: list[bytes] = []
    followed: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.host != "server":
            followed.append(str(request.url))
        if trio.current_time() < 60:
            return httpx.Response(301, headers={"Location": f"https://trioscope.example.com{request.url.path}"})
        if request.url.path == "/api/v1/reports":
            taken.append(request.content)
            return httpx.Response(202, json={})
        return httpx.Response(404 if "config" in request.url.path else 201, json={})

    collections = await _collections_while(server, 120, monkeypatch)
    said = [r.getMessage() for r in caplog.records]
    assert any("unreachable (/api/v1/agents/register answered 301: the server redirects to https://trioscope."
               "example.com/api/v1/agents/register; use https://trioscope.example.com as --server (not followed))"
               in m for m in said), said
    assert not any("refused" in m for m in said), said
    assert followed == [] and len(taken) >= collections - 2  # those of the first minute waited, and went


async def test_the_reports_dropped_while_away_are_counted_for_each_time_away(
        autojump_clock: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second, short outage that dropped nothing was said as "(12 reports
    dropped while away)", the first outage's count (a reviewer's)."""
    caplog.set_level(logging.INFO, logger="trioscope_probe")

    def server(request: httpx.Request) -> httpx.Response:
        now = trio.current_time()
        if now < 60 or 100 <= now < 103:
            return httpx.Response(500, json={"error": {"code": "internal", "message": "away"}})
        if request.url.path.startswith("/api/v1/agents/config"):
            return httpx.Response(404)
        return httpx.Response(202 if request.url.path == "/api/v1/reports" else 201, json={})

    await _collections_while(server, 200, monkeypatch, buffer=5)
    connected = [r.getMessage() for r in caplog.records if r.getMessage().startswith("connected to")]
    assert len(connected) == 2, connected
    assert "reports dropped while away" in connected[0] and "dropped" not in connected[1], connected


async def test_a_flapping_server_is_said_about_once_a_minute_with_its_interruptions(
        autojump_clock: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """503 to every other report: a line each way every cycle, 32 in 30 s (a reviewer's)."""
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    reports = 0

    def server(request: httpx.Request) -> httpx.Response:
        nonlocal reports
        if request.url.path == "/api/v1/reports":
            reports += 1
            return httpx.Response(503 if reports % 2 else 202, json={})
        if request.url.path.startswith("/api/v1/agents/config"):
            return httpx.Response(404)
        return httpx.Response(201, json={})

    await _collections_while(server, 600, monkeypatch)
    said = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage() or "connected" in r.getMessage()]
    assert reports > 200 and 3 <= len(said) <= 600 / 60 + 3, said
    assert any("interruptions in the last" in m for m in said), said


@pytest.mark.parametrize(("takes", "gap"), [(4.0, 15.0), (20.0, 35.0)])
async def test_reports_keep_their_interval_from_each_collections_start(
        takes: float, gap: float, autojump_clock: Any, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Timed from a collection's end, a host whose collection took 4 s reported
    every 19 s for 15; one longer than the interval is followed an interval
    after it ends (the probe's collecting at most half a core), and said once."""
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    starts: list[float] = []

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/v1/agents/config"):
            return httpx.Response(404)
        return httpx.Response(202 if request.url.path == "/api/v1/reports" else 200, json={})

    async def slow(function: Any, *args: Any, **_: Any) -> Any:
        starts.append(trio.current_time())
        await trio.sleep(takes)
        return function(*args)

    monkeypatch.setattr(trio.to_thread, "run_sync", slow)
    with trio.move_on_after(200):
        await run_publisher("http://server", "probe-1", "host", 15.0, 40, _report, transport=httpx.MockTransport(server))
    assert len(starts) >= 4 and [b - a for a, b in zip(starts, starts[1:])] == [pytest.approx(gap)] * (len(starts) - 1)
    late = [r.getMessage() for r in caplog.records if "longer than the interval" in r.getMessage()]
    assert len(late) == (1 if takes > 15 else 0), late


def test_text_a_source_missed_is_sent_written_out_and_said_once_not_raised(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The collectors make what they read valid text; a lone surrogate they
    missed (or a container engine's JSON escaping one) stopped the probe at
    its first report (orjson's TypeError, out of the collecting loop)."""
    monkeypatch.setattr(_transport, "_INVALID_SAID", set())
    report = Report(agent_id="a1", hostname="h", timestamp=datetime.now(UTC), processes_info=ProcessesInfo(processes=[
        ProcessInfo(pid=7, name="x\udcff", cmdline="a\ud800 İ")]))
    with caplog.at_level(logging.WARNING, logger="trioscope_probe"):
        for _ in range(2):
            body, _ = encode_report(report)
            (process,) = decode_report(orjson.loads(gzip.decompress(body))).processes_info.processes  # type: ignore[union-attr]
            assert (process.name, process.cmdline) == ("x\\udcff", "a\\ud800 İ")
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and "processes_info.processes[].cmdline, processes_info.processes[].name" in said[0]
    assert orjson.loads(report_json(report, orjson.OPT_INDENT_2))["processes_info"]["processes"][0]["name"] == "x\\udcff"
