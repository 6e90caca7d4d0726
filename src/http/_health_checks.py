"""What the health endpoints look at: one named check per component (store,
actors, topology, queues; a bus or a metrics backend adds its own with
``HealthChecks.add`` when configured), each answering how the component is,
whether the server may take traffic because of it, and its figures.

``/health`` shows each component's ``status`` under ``services`` (the seed's
shape); ``/health/ready`` is 503 while any is not ``ready`` or the server is
stopping; ``/health/detailed`` shows the figures.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from trioscope.actors.store import GetAway
from trioscope.runtime import ActorStats, Published, SupervisorStats
from trioscope.store import postgres_url, resolve_database

if TYPE_CHECKING:
    from ._services import Services

CHECK_TIMEOUT = 2.0
"""Seconds one component's check may take before it counts as not answering."""


@attrs.frozen(kw_only=True)
class ComponentHealth:
    """One component as a check found it."""

    status: str
    """One word for ``/health``'s ``services``: ``connected``, ``running``, ``processing``, ``unavailable``..."""
    ready: bool
    """Whether the server may take traffic as far as this component goes."""
    reason: str | None = None
    """Why not ready, for ``/health/ready``'s 503."""
    figures: dict[str, Any] = attrs.field(factory=dict)
    """Numbers for ``/health/detailed`` (cheap ones: a check runs on every probe)."""


HealthCheck = Callable[["Services", bool], Awaitable[ComponentHealth]]
"""``check(services, detailed)``: ``detailed`` asks for the figures too."""


def default_checks() -> dict[str, HealthCheck]:
    """Every app's checks (the bus's is added where a bus is configured)."""
    return {"store": StoreCheck(), "actors": check_actors, "topology": check_topology, "queues": check_queues}


@attrs.define
class HealthChecks:
    """The components' checks, in the order they are shown, and whether the
    server is stopping (then it is not ready, whatever the checks say)."""

    checks: dict[str, HealthCheck] = attrs.field(factory=default_checks)
    stopping: bool = False

    def add(self, name: str, check: HealthCheck) -> None:
        """Add (or replace) a component's check, e.g. ``bus`` when a message bus is configured."""
        self.checks[name] = check

    async def run(self, services: Services, *, detailed: bool = False) -> dict[str, ComponentHealth]:
        """Every check, concurrently, each within ``CHECK_TIMEOUT``."""
        found: dict[str, ComponentHealth] = {}

        async def one(name: str, check: HealthCheck) -> None:
            with trio.move_on_after(CHECK_TIMEOUT):
                found[name] = await check(services, detailed)
                return
            found[name] = ComponentHealth(status="not_answering", ready=False,
                                          reason=f"did not answer within {CHECK_TIMEOUT:g} s")

        async with trio.open_nursery() as nursery:
            for name, check in self.checks.items():
                nursery.start_soon(one, name, check)
        return {name: found[name] for name in self.checks}


class StoreCheck:
    """A trivial read, timed; the single writer's actor alive and its writes
    taken (it refuses them while it cannot reach the database, which the reads
    may reach: a role out of connections for its new one); and the reads not
    failing for want of the database (a locked table fails them while the
    trivial read answers: ``StoreReader.reads_failing``). One per app: it
    keeps what the store publishes of its writes, asked for once (asked on
    every probe, a store with thousands of commits queued would answer after them)."""

    def __init__(self) -> None:
        self.away: Published[str | None] | None = None

    async def __call__(self, services: Services, detailed: bool) -> ComponentHealth:
        started = time.perf_counter()
        try:
            await services.reader.check()
        except Exception as exc:  # noqa: BLE001  # any database error means "unavailable", said in the reason
            return ComponentHealth(status="unavailable", ready=False, reason=f"cannot read the database: {exc}")
        latency = time.perf_counter() - started
        if not services.store.alive:
            return ComponentHealth(status="unavailable", ready=False, reason="the store actor is not running")
        if self.away is None:
            self.away = await services.store.ask(GetAway(), timeout=CHECK_TIMEOUT)
        if (away := self.away.value) is not None:
            # The store's refusal: the database server away, or the SQLite file failing.
            settings = services.settings
            code = ("database_unavailable" if postgres_url(resolve_database(settings.store.database,
                                                                            settings.storage.data_dir))
                    else "store_failing")
            return ComponentHealth(status="unavailable", ready=False,
                                   reason=f"writes refused (answered 503 {code}): {away}")
        failing = await services.reader.reads_failing()
        if failing is not None:
            return ComponentHealth(status="unavailable", ready=False,
                                   reason=f"reads fail (answered 503 database_unavailable): {failing}")
        return ComponentHealth(status="connected", ready=True,
                               figures={"read_latency_ms": round(latency * 1000, 3)})


async def check_actors(services: Services, detailed: bool) -> ComponentHealth:
    """The supervision tree: up while the root runs."""
    system = services.system
    if not system.root.alive:
        return ComponentHealth(status="stopped", ready=False, reason="the supervision tree is not running")
    figures: dict[str, Any] = {}
    if detailed:
        stats = system.snapshot()
        figures = {"actors": stats.actors, "dead_letters": stats.dead_letters,
                   "restarts_by_type": stats.restarts_by_type,
                   "tree": [_component(child) for child in stats.root.children]}
    return ComponentHealth(status="running", ready=True, figures=figures)


def _component(stats: ActorStats | SupervisorStats) -> dict[str, Any]:
    """One child of the root; a supervisor's children summed (there may be
    thousands: one per agent or WebSocket), so the answer stays small."""
    if isinstance(stats, ActorStats):
        return {"path": stats.path, "status": stats.status, "restarts": stats.restarts,
                "mailbox_depth": stats.mailbox_depth, "mailbox_capacity": stats.mailbox_capacity,
                "mailbox_high_water": stats.mailbox_high_water, "message_rate": round(stats.message_rate, 2)}
    actors = [child for child in stats.children if isinstance(child, ActorStats)]
    return {"path": stats.path, "status": stats.status, "restarts": stats.restarts, "children": len(stats.children),
            "children_restarts": sum(child.restarts for child in stats.children),
            "mailbox_depth_total": sum(child.mailbox_depth for child in actors),
            "mailbox_depth_max": max((child.mailbox_depth for child in actors), default=0)}


async def check_topology(services: Services, detailed: bool) -> ComponentHealth:
    """The topology actor, which merges reports and publishes the graph."""
    if not services.topology.alive:
        return ComponentHealth(status="unavailable", ready=False, reason="the topology actor is not running")
    return ComponentHealth(status="loaded", ready=True, figures={"agents": len(services.agents)})


async def check_queues(services: Services, detailed: bool) -> ComponentHealth:
    """Command queues: their owner routes every request for one."""
    if not services.queue_owner.alive:
        return ComponentHealth(status="stopped", ready=False, reason="the command queue owner is not running")
    return ComponentHealth(status="processing", ready=True,
                           figures={"running_queues": len(services.queues), "polls_waiting": len(services.polls)})


async def check_bus(services: Services, detailed: bool) -> ComponentHealth:
    """The report bus: connected, and the stream read to its end once since the
    start (until then the topology and history are still being rebuilt)."""
    assert services.bus is not None
    progress = services.bus.progress
    figures = progress.as_dict()
    if not progress.caught_up:
        if not progress.connected:
            return ComponentHealth(status="connecting", ready=False, reason="not connected to the report bus yet",
                                   figures=figures)
        to_go = (f"{progress.lag} reports to go" if progress.lag is not None
                 else "how many reports are left is not known yet (no answer from the bus)")
        return ComponentHealth(status="catching_up", ready=False, reason=f"reading the report stream: {to_go}",
                               figures=figures)
    if not progress.connected:
        # Still ready: queries answer from the last state, and every replica
        # answers reports 503 alike until the bus is back.
        return ComponentHealth(status="reconnecting", ready=True, figures=figures)
    return ComponentHealth(status="connected", ready=True, figures=figures)

