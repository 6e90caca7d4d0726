"""Request bodies being received, against a real server: one client address's
hold at most ``limits.body_bytes_per_address`` (trusted proxies exempt), all
of them ``limits.body_bytes_total``; beyond, a request gets 503
``body_budget_exceeded`` with Retry-After, naming the setting, while other
addresses are still served. Counted as the bytes arrive (the
``app_request_body_bytes`` gauge of /metrics) and given back when the body is
done with.

Bodies are "trickled": all but their last byte sent, then nothing, as the
reviewer's client did (150 such connections of one address held +1.5 GiB for
``server.body_timeout``)."""

from __future__ import annotations

import gzip
import time
from urllib.parse import urlsplit

import httpx
import orjson
import trio

from tests.integration.test_commands import fresh
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually

BODY = 1_000_000
"""Each trickled body's Content-Length (all but its last byte is sent)."""
HELD = BODY - 1
MIB = 1024 * 1024
FLAGS = ["--max-body-size", "1MiB", "--max-body-bytes-per-address", "4MiB", "--body-timeout", "5m"]
"""Budgets small enough to fill in a test; no trickled body times out meanwhile."""


def _where(server: ServerProcess) -> tuple[str, int]:
    url = urlsplit(server.base_url)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


async def _trickle(server: ServerProcess, source: str, *, chunked: bool = False,
                   forwarded: str | None = None) -> trio.SocketStream:
    """A connection from ``source`` that posts a report body of ``BODY`` bytes
    but its last one (chunked: one chunk of that many, and no end), for the
    client ``forwarded`` names (X-Forwarded-For) if given."""
    host, port = _where(server)
    stream = await trio.open_tcp_stream(host, port, local_address=source)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY}"
    if forwarded is not None:
        framing += f"\r\nX-Forwarded-For: {forwarded}"
    head = f"POST /api/v1/reports HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    body = f"{BODY:x}\r\n".encode() + b" " * BODY if chunked else b" " * HELD
    try:
        await stream.send_all(head.encode() + body)
    except trio.BrokenResourceError:
        pass  # refused and closed while it sent: its answer is read still
    return stream


async def _answer(stream: trio.SocketStream, deadline: float = 30) -> tuple[int, dict[str, str], dict]:
    """The response on ``stream``: status, headers (lower-case names), JSON body."""
    data = b""
    with trio.fail_after(deadline):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            assert chunk, f"closed without an answer: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        while len(body) < int(headers["content-length"]):
            chunk = await stream.receive_some(65536)
            assert chunk
            body += chunk
    return int(lines[0].split()[1]), headers, orjson.loads(body)


async def _metric(server: ServerProcess, name: str) -> float:
    """A sample of /metrics, asked from an address of its own (127.0.0.2)."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30,
                                 transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")) as client:
        metrics = (await client.get("/metrics")).text
    for line in metrics.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return 0.0


async def _held(server: ServerProcess, expected: float) -> None:
    """Wait until the server counts ``expected`` bytes of bodies being received."""
    async def counted() -> bool:
        return await _metric(server, "app_request_body_bytes") == expected

    await eventually(counted)


async def _hold(server: ServerProcess, source: str, count: int, already: int = 0,
                forwarded: str | None = None) -> list[trio.SocketStream]:
    """``count`` trickled bodies from ``source``, each counted before the next is
    sent (``forwarded``: for the clients it names, ``{index}`` replaced by each's)."""
    streams = []
    for index in range(count):
        client = None if forwarded is None else forwarded.format(index=index)
        streams.append(await _trickle(server, source, forwarded=client))
        await _held(server, (already + index + 1) * HELD)
    return streams


def _refused_as(answer: tuple[int, dict[str, str], dict], setting: str) -> None:
    status, headers, body = answer
    assert status == 503, body
    assert headers.get("retry-after") == "5", headers
    assert body["error"]["code"] == "body_budget_exceeded", body
    assert setting in body["error"]["message"] and body["error"]["details"]["setting"] == setting, body


async def _report(server: ServerProcess, source: str) -> httpx.Response:
    report = host_report(0, timestamp=time.time(), containers=1, processes=3, connections=2,
                         agent_prefix=fresh("budget"))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30,
                                 transport=httpx.AsyncHTTPTransport(local_address=source)) as client:
        return await client.post("/api/v1/reports", json=report)


async def test_one_address_holds_at_most_its_body_budget_and_others_are_served() -> None:
    """Four bodies of ~1 MB fit 4 MiB; a fifth (its Content-Length says so)
    is refused before it is read, and a chunked one as soon as its bytes go
    over. Another address's report is accepted meanwhile, and what the server
    holds stays the four bodies."""
    with ServerProcess(FLAGS) as server:
        held = await _hold(server, "127.0.0.30", 4)
        try:
            for _ in range(3):
                refused = await _trickle(server, "127.0.0.30")
                _refused_as(await _answer(refused), "limits.body_bytes_per_address")
                await refused.aclose()
            chunked = await _trickle(server, "127.0.0.30", chunked=True)
            _refused_as(await _answer(chunked), "limits.body_bytes_per_address")
            await chunked.aclose()

            accepted = await _report(server, "127.0.0.2")
            assert accepted.status_code == 202, accepted.text[:500]
            assert await _metric(server, "app_request_body_bytes") == 4 * HELD
            assert await _metric(server, 'app_requests_refused_total{reason="body_bytes_per_address"}') == 4
        finally:
            for stream in held:
                await stream.aclose()
        await _held(server, 0)  # given back when their connections went
        again = await _report(server, "127.0.0.30")
        assert again.status_code == 202, again.text[:500]
    lines = [line for line in server.stderr().splitlines() if "refused a request body from 127.0.0.30" in line]
    assert lines and "limits.body_bytes_per_address" in lines[0], lines
    assert len(lines) < 4, lines  # said once, not per refusal


async def test_behind_a_trusted_proxy_each_client_it_names_has_the_address_budget_and_the_total_holds() -> None:
    """Behind a proxy every body comes from its address: capped by that
    address, it would cut off every client at once; not capped at all, one
    client behind it could take the whole server's budget. Each client the
    proxy names has its own (as the other per-address limits of requests)."""
    flags = [*FLAGS, "--max-body-bytes-total", "8MiB", "--trusted-proxies", "127.0.0.40/32"]
    with ServerProcess(flags) as server:
        held = await _hold(server, "127.0.0.40", 4, forwarded="10.1.0.1")  # one client's budget
        try:
            mine = await _trickle(server, "127.0.0.40", forwarded="10.1.0.1")
            _refused_as(await _answer(mine), "limits.body_bytes_per_address")
            await mine.aclose()
            held += await _hold(server, "127.0.0.40", 4, already=4, forwarded="10.2.0.{index}")  # others'

            beyond = await _trickle(server, "127.0.0.40")
            _refused_as(await _answer(beyond), "limits.body_bytes_total")
            await beyond.aclose()
            other = await _trickle(server, "127.0.0.41")  # the total is every address's
            _refused_as(await _answer(other), "limits.body_bytes_total")
            await other.aclose()
            assert await _metric(server, "app_request_body_bytes") == 8 * HELD
        finally:
            for stream in held:
                await stream.aclose()
        await _held(server, 0)


async def test_a_reports_decompressed_body_counts_while_the_report_is_taken_in() -> None:
    """A report holds its body until it is handed on (a large one waits for
    the one decode thread), and a gzip body holds what it inflates to: both
    counted then, not only the wire bytes while they arrive. With four
    bodies held, a report whose few KB of gzip fit the address's 4 MiB, but
    not the ~1 MB they inflate to."""
    with ServerProcess(FLAGS) as server:
        held = await _hold(server, "127.0.0.31", 4)
        try:
            report = host_report(0, timestamp=time.time(), agent_prefix=fresh("inflated"))
            report["host_info"]["os"] = ""
            document = orjson.dumps({**report, "padding": " " * (BODY - 10_000)})
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30,
                                         transport=httpx.AsyncHTTPTransport(local_address="127.0.0.31")) as client:
                answer = await client.post("/api/v1/reports", content=gzip.compress(document), headers={
                    "Content-Type": "application/json", "Content-Encoding": "gzip"})
            assert answer.status_code == 503, answer.text[:500]
            assert answer.json()["error"]["details"]["setting"] == "limits.body_bytes_per_address"
            assert await _metric(server, "app_request_body_bytes") == 4 * HELD  # nothing of it kept counted
        finally:
            for stream in held:
                await stream.aclose()
        await _held(server, 0)


async def test_a_body_longer_than_the_size_limit_is_413_not_a_budget_refusal() -> None:
    """A Content-Length over ``--max-body-size`` can never fit: 413 (the probe
    sends a smaller report), not 503 (which it would resend for ever)."""
    with ServerProcess(FLAGS) as server:
        host, port = _where(server)
        stream = await trio.open_tcp_stream(host, port, local_address="127.0.0.32")
        await stream.send_all(f"POST /api/v1/reports HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                              f"Content-Length: {200 * MIB}\r\n\r\n".encode())
        status, _, body = await _answer(stream)
        await stream.aclose()
    assert status == 413, body
