"""Rate checks at the edge: the client address's budgets (requests, probe
reports, registrations), what a socket's messages count against them, and an
agent's budgets of requests and bytes. Beyond one: 429 with Retry-After,
counted in /metrics."""

from __future__ import annotations

import time

from quart import g

from trioscope.domain.rates import RateLimiter, retry_after
from trioscope.store import RateBudget

from ._client_address import client_source
from ._errors import ApiError
from ._services import services


async def check_address_rate() -> None:
    """The client address's request budget (``limits.per_address``), before
    any other work on the request: charged once per request or WebSocket
    upgrade, however many gates it passes (the app charges every request as
    it arrives, ``_app``; a route's own gates then find it paid)."""
    # A coroutine although it never waits: Quart runs a plain-function hook in
    # a worker thread, a thread hop on every request.
    if g.get("address_charged", False):
        return
    # Marked before the charge: a refused request is not charged again by the
    # next gate it would have passed (it is answered 429 at once anyway).
    g.address_charged = True
    s = services()
    _charge(s.gate.per_address, s.settings.limits.per_address, "address", "too many requests from this address")


async def check_report_rate() -> None:
    """The client address's budget of probe reports and heartbeats
    (``limits.reports_per_address``), checked before the body is read."""
    s = services()
    _charge(s.gate.reports_per_address, s.settings.limits.reports_per_address, "address_reports",
            "too many reports from this address (limits.reports_per_address; raise it if many probes share "
            "one address)")


async def check_registration_rate() -> None:
    """The client address's budget of registrations and enrollments."""
    s = services()
    _charge(s.gate.registrations_per_address, s.settings.limits.registrations_per_address,
            "address_registrations", "too many registrations from this address")


def _charge(limiter: RateLimiter, limit: int, scope: str, message: str) -> None:
    """Count one request against ``limiter``, keyed by the client address: 429
    with Retry-After beyond it, counted in /metrics."""
    _refuse_beyond(limiter.acquire(client_source(), time.monotonic()), scope, message, limit_per_minute=limit)


async def charge_shared(budget: RateBudget, key: str, scope: str, message: str) -> None:
    """``_charge`` for a budget every replica shares (per agent, per user)."""
    _refuse_beyond(await budget.acquire(key), scope, message, limit_per_minute=budget.per_minute)


def _refuse_beyond(wait: float, scope: str, message: str, **limit: int) -> None:
    """429 with Retry-After (``wait`` seconds) and the ``limit`` named, counted in /metrics; nothing if ``wait`` is 0."""
    if wait:
        services().metrics.refused(f"rate_{scope}")
        raise ApiError(429, "rate_limited", f"{message}; slow down", details={**limit, "scope": scope},
                       headers={"Retry-After": retry_after(wait)})


READ_PAUSE = 1.0
"""Seconds a WebSocket goes unread after one of its messages was refused for a
rate (``read_pause``): what its client sends meanwhile waits in Hypercorn's
queue (a few messages) and then in TCP's buffers. Refused at once but read
on, two agents' ~1 MB messages were still received as fast as they came
(wsproto's work, ~100 MB/s) and every other client's requests waited 8x."""


def read_pause(ping_interval: float) -> float:
    """``READ_PAUSE``, but at most a quarter of ``ping_interval``: the pong to a
    ping sent during the pause is read in time."""
    return min(READ_PAUSE, ping_interval / 4)


def charge_socket_message(address: str) -> float:
    """Count a message a client (live view, user events) sent on its socket
    against its address's request budget (``limits.per_address``): the
    seconds to wait, 0 if it is within it (then counted), as ``_charge``
    would refuse it. A browser sends a few a minute (views, pongs)."""
    wait = services().gate.per_address.acquire(address, time.monotonic())
    if wait:
        services().metrics.refused("rate_address")
    return wait


BYTE_UNIT = 64 * 1024
"""What an agent's byte budget counts in (``agent_byte_budget``): each started one (an empty body costs nothing)."""


def agent_byte_budget(per_minute: int) -> RateLimiter:
    """The per-agent budget of bytes (``limits.agent_bytes``), in ``BYTE_UNIT``s, half of it at once."""
    units = max(1, per_minute // BYTE_UNIT)
    return RateLimiter(units, burst=max(1, units // 2))


def charge_agent_bytes(agent_id: str, size: int) -> None:
    """Count ``size`` bytes of an agent's request body or socket message
    against this process's byte budget for it, each started ``BYTE_UNIT``
    (an empty body nothing): 429 (scope ``agent_bytes``) beyond it. Parsing
    and checking JSON costs ~0.1 s a MB of the event loop (or of the GIL, in
    a worker thread): one agent sending 750 KB command results within its
    600 requests a minute held every other client's requests up by ~230 ms each."""
    units = -(-size // BYTE_UNIT)
    if units:
        s = services()
        _refuse_beyond(s.gate.agent_bytes.acquire(agent_id, time.monotonic(), units), "agent_bytes",
                       "too many bytes from this agent", limit_bytes_per_minute=s.settings.limits.agent_bytes)


async def charge_agent(agent_id: str) -> None:
    """Count a message on an authenticated agent socket against the agent's
    request budget, as ``agent`` counts a request: 429 beyond it. Its bytes
    are counted before it is read (``charge_agent_bytes``)."""
    await charge_shared(services().gate.per_agent, agent_id, "agent", "too many requests from this agent")
