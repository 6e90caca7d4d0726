"""What route handlers reach: the actor system and the settings, one object per app."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import attrs
import trio
from quart import Quart, current_app

from trioscope.actors.client import LiveCounters
from trioscope.actors.client_link import ClientLink
from trioscope.actors.reset_turns import ResetTurns
from trioscope.config import Settings
from trioscope.runtime import ActorRef, ActorSystem, Published, SupervisorRef

from trioscope.domain.deployments import AgentDirectory
from trioscope.domain.live import ViewAdmission
from trioscope.domain.presence import AgentSightings
from trioscope.domain.principals import Principal
from trioscope.domain.rates import Holdings, RateLimiter, RefusalSampler
from trioscope.store import DiskRoom, RateBudget, ReplayIds, StoreReader
from trioscope.system import database_path

from ._forwarded import TrustedProxies
from ._health_checks import HealthChecks
from ._metrics import Metrics, SharedScrapes

if TYPE_CHECKING:
    from trioscope.bus import ReportBus  # nats-py, imported only with a bus (``trioscope.bus``)

log = logging.getLogger(__name__)

_KEY = "trioscope"
REPLAY_WINDOW = 600.0
"""Seconds an agent request id is remembered (twice the allowed clock skew)."""


@attrs.define
class Gate:
    """Rate limiters and the replay window. Per client address: this process's
    (pure structures; Trio runs one handler at a time, so check-and-record
    needs no lock), a first line of defence before any credential is looked
    at. Per agent, per user and the replay window: where every replica sees
    the same (``trioscope.store.open_limits``: this process's memory with
    SQLite, PostgreSQL's tables with replicas)."""

    per_address: RateLimiter
    per_agent: RateBudget
    per_user: RateBudget
    agent_bytes: RateLimiter
    """Bytes an agent's bodies and socket messages may bring, in ``BYTE_UNIT``s:
    this process's (what it protects is this process's event loop)."""
    reports_per_address: RateLimiter
    """Probe reports and heartbeats: a budget of their own, since many probes may
    share one (NAT) address."""
    registrations_per_address: RateLimiter
    replay: ReplayIds
    """Agent request ids seen in the last ``REPLAY_WINDOW`` seconds. Its
    ``signed_since`` is the oldest X-Timestamp accepted: a window in this
    process's memory knows only the ids it saw since it started, so a request
    signed before then, which a previous process may have served, could be a
    replay."""
    tokens: dict[str, Principal] = attrs.field(factory=dict)
    """User tokens already verified (the signature check costs more than the
    rest of a small request): token -> principal, until the token expires."""
    directory: Published[AgentDirectory] | None = None
    """What the directory actor publishes, asked for once (``_directory.directory()``)."""
    replicated: bool = False
    """Other processes share the store (PostgreSQL): a deployment or agent not
    known here may have been created by one of them a moment ago."""
    sightings: AgentSightings = attrs.field(factory=AgentSightings)
    """What this process observed of each agent (when it was last heard
    from, its address, its latency, ...: ``_agent_presence``)."""
    refusals: RefusalSampler = attrs.field(factory=RefusalSampler)
    """Which refusals of clients who named nobody are audited one by one."""
    attributed_refusals: RefusalSampler = attrs.field(factory=lambda: RefusalSampler(total_per_minute=None))
    """Which refusals whose credentials proved who sent them (an agent's
    token with a bad signature, a revoked agent's, a user's forbidden
    request) are audited one by one: each agent or user apart, none over all
    (a tenant's flood never leaves out another's). One agent token with bad
    signatures wrote ~7,000 rows a minute from one address, kept 30 days."""
    app_statuses_audited: RefusalSampler = attrs.field(factory=lambda: RefusalSampler(total_per_minute=None))
    """Which app statuses agents post (``POST /api/v1/apps/status``) are
    audited one by one (``app.status``), each agent apart, as
    ``attributed_refusals`` samples refusals: one is posted after each health,
    logs and restart command, and a loop of them must not write a row each."""
    claims_checked: dict[str, tuple[float, bool]] = attrs.field(factory=dict)
    """Probe agent id -> when (monotonic) the topology last said whether its
    enrolled agent's claim lapsed, and what (``_probe_vouching.vouch``): asked once per
    ``CLAIM_CHECK_EVERY`` (or the stale threshold) at most, so unsigned requests for a claimed id (an
    address may send 200 a second) are not each an ask of the topology. At
    most one entry per claim."""


@attrs.frozen(kw_only=True)
class Services:
    system: ActorSystem
    settings: Settings
    worker: int | None = None
    """Which of ``--workers`` serving processes this is (1..N); None when one process serves alone."""
    agents: SupervisorRef
    """``/root/agents``: one actor per agent (started by the roster; the edge only reads them)."""
    roster: ActorRef
    """``/root/roster``: probes' reports, registrations and heartbeats."""
    topology: ActorRef
    hub: ActorRef
    clients: SupervisorRef
    """``/root/clients``: one actor per WebSocket client (started by the client owner)."""
    client_owner: ActorRef
    """``/root/client_owner``: starts a WebSocket's client actor (``OpenClient``)."""
    live: LiveCounters
    links: set[ClientLink] = attrs.field(factory=set)
    """Open WebSocket connections (closed with 1001 when the server stops)."""
    metrics: Metrics
    store: ActorRef
    """``/root/store``: the single writer of the database."""
    directory: ActorRef
    """``/root/directory``: deployments and agent credentials."""
    queues: SupervisorRef
    """``/root/queues``: one actor per deployment with open commands or waiting polls (started by
    the queue owner; the edge only tells the running ones)."""
    queue_owner: ActorRef
    """``/root/queue_owner``: every request for a deployment's queue (``ForDeployment``)."""
    alerts: ActorRef
    """``/root/alerts``: alerts to users (the server's own rules, Alertmanager's webhook)."""
    reader: StoreReader
    secret: bytes = attrs.field(repr=False)
    """Signs and checks user tokens."""
    gate: Gate
    sockets_per_address: Holdings[str] = attrs.field(factory=Holdings)
    """Open client WebSockets (live views, users' events) by client address."""
    sockets_per_user: Holdings[tuple[str, str]] = attrs.field(factory=Holdings)
    """Of them, those opened with a user's token, by (tenant, user)."""
    scrapes: SharedScrapes = attrs.field(factory=SharedScrapes)
    """``/metrics`` answers being made, shared by the scrapes asked meanwhile."""
    metrics_reads: Holdings[tuple[str, str]] = attrs.field(factory=Holdings)
    """PromQL reads being answered, by (tenant, user) (``_metrics_api.READS_AT_ONCE``)."""
    listings: Holdings[tuple[str, str]] = attrs.field(factory=Holdings)
    """Store listings being answered, by (tenant, user) (``_listings.LISTINGS_AT_ONCE``)."""
    live_views: Holdings[str] = attrs.field(factory=Holdings)
    """Live-view sockets open now per tenant of their reader (those with a
    token): what ``/api/v1/query/stats`` tells a tenant's user, not the server's count."""
    agent_sockets: dict[str, list[ClientLink]] = attrs.field(factory=dict)
    """Open ``/ws/agent`` sockets by agent id, oldest first (``_command_ws.AGENT_SOCKETS``)."""
    polls: set[trio.CancelScope] = attrs.field(factory=set)
    """The waits of held long-polls, cancelled (the poll answers 204) when the server stops."""
    started_monotonic: float = attrs.field(factory=time.monotonic)
    heavy_work: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(1))
    view_builds: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(1))
    """What is built once per topology version for its readers (id orders,
    compressed views), one at a time: readers of a new version arriving
    together do not each compute the same thing."""
    """Worker threads for CPU-heavy request work (large reports), one at a time."""
    first_views: ViewAdmission = attrs.field(default=attrs.Factory(
        lambda self: ViewAdmission(self.settings.websocket.first_views_per_second,
                                   self.settings.websocket.max_waiting_clients,
                                   burst=max(1, self.settings.websocket.first_views_per_second // 4),
                                   max_per_address=self.settings.websocket.max_waiting_clients_per_address),
        takes_self=True))
    """Live-view clients waiting for their first view, and the pace of first views."""
    first_view_room: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot)
    """Where live views wait for their address's share of ``first_views``
    (``_live._admitted``), woken whenever a waiting client leaves it."""
    reset_turns: ResetTurns = attrs.field(default=attrs.Factory(
        lambda self: ResetTurns.from_settings(self.settings.websocket), takes_self=True))
    """Every live-view client's turn to build a reset, and the frames held until sent, by client address."""
    proxies: TrustedProxies = attrs.field(default=attrs.Factory(
        lambda self: TrustedProxies.parse(self.settings.server.trusted_proxies, self.settings.server.forwarded_header),
        takes_self=True))
    """Whose forwarded headers name the client (``_client_address.client_address``)."""
    bus: ReportBus | None = None
    """The report bus (``bus.url``): reports go there instead of to the roster; None: merged here."""
    health: HealthChecks = attrs.field(factory=HealthChecks)
    """What ``/health``, ``/health/ready`` and ``/health/detailed`` look at."""
    disk_room: DiskRoom = attrs.field(default=attrs.Factory(
        lambda self: DiskRoom.of(database_path(self.settings), self.settings.storage.min_free_bytes),
        takes_self=True))
    """The free space of the embedded store's disk (``storage.min_free_bytes``)."""
    server_admin_tenants: list[str] = attrs.field(factory=list)
    """The first two tenants whose ADMINs administered the server with
    ``auth.admin_tenant`` empty (``note_server_admin``)."""

    def note_server_admin(self, tenant: str) -> None:
        """An ADMIN of ``tenant`` was let administer the whole server because
        ``auth.admin_tenant`` is empty: said once, at warning level, when a
        second tenant's ADMIN is (each then reads every tenant's figures and
        probe ids: fine for one tenant's server, not for one that hosts several)."""
        seen = self.server_admin_tenants
        if len(seen) < 2 and tenant not in seen:
            seen.append(tenant)
            if len(seen) == 2:
                log.warning("ADMINs of tenants %r and %r each administer the whole server (every tenant's figures "
                            "on /metrics, /health/detailed and /api/v1/runtime): auth.admin_tenant is empty. Name "
                            "the tenant whose ADMINs administer the server with --admin-tenant",
                            seen[0][:64], tenant[:64], extra={"event": "admin_tenant_unset"})

    def first_view_left(self, address: str) -> None:
        """A live-view client from ``address`` has its first view, or left without it."""
        self.first_views.leave(address)
        self.first_view_room.unpark_all()


def attach(app: Quart, value: Services) -> None:
    app.extensions[_KEY] = value


def services_of(app: Quart) -> Services:
    """The services attached to ``app``, outside a request."""
    return app.extensions[_KEY]  # type: ignore[no-any-return]  # Quart's extensions are untyped; attach() put Services there


def services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions[_KEY]  # type: ignore[no-any-return]  # Quart's extensions are untyped; install() put Services there
