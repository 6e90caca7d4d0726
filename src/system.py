"""The supervision tree of a trioscope server, in one readable place.

Children start in this order and stop in the reverse order, so an actor may
rely on every actor above it while it starts, runs and drains its mailbox:
the topology actor stops (merging what it has queued) before the agents do,
and the roster, which hands them reports, stops before all of them.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING

from trioscope.actors.alerts import AlertsActor, AlertsState
from trioscope.actors.change_feed import change_feed_spec
from trioscope.actors.client_owner import ClientOwnerActor
from trioscope.actors.deployment_queue import Snapshot
from trioscope.actors.directory import DirectoryActor
from trioscope.actors.hub import HubActor, HubMembers
from trioscope.actors.log_follows import log_follows_spec
from trioscope.actors.metrics import NODE_BUCKETS_WAITING, MetricsActor, MetricStores
from trioscope.actors.notifier import NotifierActor, Watchers
from trioscope.actors.queue_owner import ForDeployment, QueueOwnerActor
from trioscope.actors.report_feed import report_feed_spec
from trioscope.actors.roster import RosterActor, clock_offsets_kept
from trioscope.actors.store import COMMIT_BUCKETS, StoreActor
from trioscope.actors.topology import TopologyActor, TopologyHistory, TopologyListeners
from trioscope.config import Settings
from trioscope.domain.clocks import ClockOffsets
from trioscope.domain.command_stats import CommandStats
from trioscope.domain.deployments import AgentDirectory
from trioscope.domain.histogram import Histogram
from trioscope.domain.metric_labels import TenantLabels
from trioscope.domain.roster import AgentRoster
from trioscope.runtime import (
    ActorSpec, ActorSystem, Backoff, Kept, Published, Strategy, SupervisorSpec, dynamic_supervisor,
)
import trioscope.store
from trioscope.store import (Database, StoreReader, database_busy, database_down, postgres_url, resolve_database,
                             store_failing)

if TYPE_CHECKING:
    from trioscope.bus import ReportBus  # nats-py, imported only with a bus (``trioscope.bus``)

log = logging.getLogger(__name__)

AGENTS = "/root/agents"
TOPOLOGY = "/root/topology"
HUB = "/root/hub"
CLIENTS = "/root/clients"
CLIENT_OWNER = "/root/client_owner"
STORE = "/root/store"
DIRECTORY = "/root/directory"
QUEUES = "/root/queues"
QUEUE_OWNER = "/root/queue_owner"
NOTIFIER = "/root/notifier"
ROSTER = "/root/roster"
METRICS = "/root/metrics"
ALERTS = "/root/alerts"
LOG_FOLLOWS = "/root/log_follows"

TOPOLOGY_MAILBOX = 4096
"""Reports queued for merging before ``POST /api/v1/reports`` answers 503."""
ROSTER_MAILBOX = 4096
"""Reports, registrations and heartbeats waiting for the roster before they get 503."""
QUEUE_OWNER_MAILBOX = 8192
"""Requests for deployments' queues (polls included) waiting to be routed before they get 503."""
STORE_BACKOFF = Backoff(initial=0.5, maximum=5.0)
"""The restart pacing of the actors that need the database (the store, the
directory): one that crashes because the database is away or refusing
statements for now, or because the SQLite file's disk fails
(``waits_for_database``), is started again every few seconds until it is
back, and never makes the root give up (the process would exit, and every
replica with it; on SQLite 5 restarts took 10 ms). Any other crash counts
against the root's intensity. (The store actor itself refuses commits
meanwhile rather than crash: this paces what it does not foresee, and the
readers of the directory.)"""


def waits_for_database(error: BaseException) -> bool:
    """A crash of an actor that needs the database which waiting may heal: the
    database away (``database_down``) or refusing statements for now
    (``database_busy``: a statement timeout under overload, a deadlock), or
    the SQLite file's disk failing (``store_failing``)."""
    return database_down(error) or database_busy(error) or store_failing(error)


def database_path(settings: Settings) -> Database:
    """Where the store is: ``store.database``, else SQLite in the data directory."""
    return resolve_database(settings.store.database, settings.storage.data_dir)


def supervision_tree(settings: Settings, *, topology_mailbox: int = TOPOLOGY_MAILBOX,
                     reader: StoreReader | None = None, bus: ReportBus | None = None) -> SupervisorSpec:
    """The root supervisor and its children for these settings.

    ``reader`` reads the database that the store actor writes; it is opened here
    when not given, and closed with the store actor. With ``bus`` (``bus.url``)
    a report feed hands the report stream to the roster.
    """
    path = database_path(settings)
    shared_reader = reader if reader is not None else StoreReader(path)
    # Names this process in the database's change notifications, so that its
    # change feed skips what it committed itself.
    origin = uuid.uuid4().hex
    replicas_url = postgres_url(path)
    database_backoff, database_backoff_on = STORE_BACKOFF, waits_for_database
    # Outlives restarts of the directory actor: the HTTP edge keeps reading the same one.
    directory_view: Published[AgentDirectory] = Published(AgentDirectory())
    # Outlives restarts of the hub: a restarted hub goes on serving its clients.
    hub_members = HubMembers()
    # Written by the deployment queues where commands finish; read by /metrics
    # and the alerts actor (the queue owner hands it out: GetCommandStats).
    command_stats = CommandStats(TenantLabels(settings.tenants.max_metric_labels))
    # What the topology, metrics, alerts and roster actors keep across a restart
    # (``Kept``): no metric history, no sample an agent wrote (answered 2xx), no
    # alert told, no probe's address is lost to a crash.
    topology_history = Kept(lambda: TopologyHistory.for_settings(settings, time.time()))
    topology_listeners = Kept(TopologyListeners)
    metric_stores = Kept(lambda: MetricStores.for_settings(settings))
    alerts_state = Kept(lambda: AlertsState.for_settings(settings))
    roster_state = Kept(AgentRoster)
    roster_clocks = Kept(lambda: ClockOffsets(clock_offsets_kept(settings)))
    # Which sockets the notifier tells, for a restarted one to close them.
    notifier_watchers: Kept[Watchers] = Kept(lambda: defaultdict(dict))
    # Why the store refuses commits (the database away), for readiness.
    store_away: Published[str | None] = Published(None)
    # The SQLite file the store opened first: opened again after a failing disk, the same one or none.
    store_file: Published[tuple[int, int] | None] = Published(None)
    # How long commits take, across restarts of the store actor (/metrics).
    commit_times = Histogram(COMMIT_BUCKETS)

    return SupervisorSpec(
        name="root",
        strategy=Strategy.ONE_FOR_ONE,
        children=[
            # Durable state first: everything below may read and write it while
            # it starts and while it drains at shutdown.
            ActorSpec(name="store", factory=lambda: StoreActor(path, shared_reader, origin=origin,
                                                                retention=settings.storage.history_retention,
                                                                away=store_away, opened=store_file,
                                                                commit_times=commit_times),
                      mailbox_size=65536, shutdown_timeout=max(1.0, settings.server.shutdown_timeout / 2),
                      backoff=database_backoff, backoff_on=database_backoff_on),
            # Users' WebSockets hear of command and agent changes through it.
            ActorSpec(name="notifier", factory=lambda: NotifierActor(notifier_watchers.take()), mailbox_size=65536),
            # Live container logs: open follows, their bounds, their lines to the notifier.
            log_follows_spec(settings, NOTIFIER),
            ActorSpec(name="directory",
                      factory=lambda: DirectoryActor(settings, store_path=STORE, reader=shared_reader,
                                                     notifier_path=NOTIFIER, published=directory_view,
                                                     queues_path=QUEUES, shared=replicas_url is not None),
                      # Its reads fail while the database is away: restarted at
                      # the store's pace, never making the root give up.
                      mailbox_size=8192, backoff=database_backoff, backoff_on=database_backoff_on),
            # One queue actor per deployment, started on demand by its owner,
            # which every request for a queue goes through (and which stops
            # before the queues do).
            dynamic_supervisor("queues", max_children=1_000_000),
            ActorSpec(name="queue_owner",
                      factory=lambda: QueueOwnerActor(settings, shared_reader, queues_path=QUEUES, store_path=STORE,
                                                      notifier_path=NOTIFIER, directory_path=DIRECTORY,
                                                      follows_path=LOG_FOLLOWS,
                                                      command_stats=command_stats, backoff=database_backoff,
                                                      backoff_on=database_backoff_on),
                      mailbox_size=QUEUE_OWNER_MAILBOX),
            # Alerts to users: the server's own rules, and Alertmanager's
            # webhook; those firing are read back from the audit log at start.
            # Before the change feed, which hands it other replicas' alerts.
            ActorSpec(name="alerts",
                      factory=lambda: AlertsActor(settings, store_path=STORE, notifier_path=NOTIFIER,
                                                  directory=directory_view, command_stats=command_stats,
                                                  own_rules=replicas_url is None, state=alerts_state.take(),
                                                  reader=shared_reader),
                      mailbox_size=4096),
            # Replicas (PostgreSQL): what the others commit, handed to the
            # directory, the queues, the alerts and the users' sockets here
            # (psycopg imported only then: ``trioscope.store``).
            *([change_feed_spec(functools.partial(trioscope.store.follow_changes, replicas_url, origin), shared_reader,
                                directory_path=DIRECTORY, queue_owner_path=QUEUE_OWNER, notifier_path=NOTIFIER,
                                alerts_path=ALERTS)]
              if replicas_url is not None else []),
            # One actor per agent; one crashing agent actor never takes others down.
            dynamic_supervisor("agents", max_children=settings.agents.max_agents),
            ActorSpec(
                name="topology",
                factory=lambda: TopologyActor(settings, agents_path=AGENTS, history=topology_history.take(),
                                              directory=directory_view, listeners=topology_listeners.take()),
                mailbox_size=topology_mailbox,
                # Merging what is queued at shutdown must fit in the shutdown budget.
                shutdown_timeout=max(1.0, settings.server.shutdown_timeout / 2),
            ),
            # Live updates: the hub subscribes to the topology; one actor per client.
            ActorSpec(name="hub", factory=lambda: HubActor(TOPOLOGY, settings.websocket.max_rate, hub_members),
                      mailbox_size=4096),
            dynamic_supervisor("clients", max_children=settings.websocket.max_clients),
            # Starts a client actor for each WebSocket that asks.
            ActorSpec(name="client_owner", factory=lambda: ClientOwnerActor(clients_path=CLIENTS), mailbox_size=4096),
            # Metrics written by agents (the embedded store) and PromQL reads of them.
            ActorSpec(name="metrics", factory=lambda: MetricsActor(settings, directory_view, metric_stores.take()),
                      mailbox_size=4096, keyed_capacity=NODE_BUCKETS_WAITING * settings.agents.max_agents),
            # Probes' reports, registrations and heartbeats: it starts their
            # actors under /root/agents and hands reports to the topology, the
            # agent's actor and the hub. Last: it stops first, so nothing is
            # handed on while the topology drains.
            ActorSpec(name="roster",
                      factory=lambda: RosterActor(settings, agents_path=AGENTS, topology_path=TOPOLOGY,
                                                  hub_path=HUB, directory=directory_view, metrics_path=METRICS,
                                                  roster=roster_state.take(), clocks=roster_clocks.take()),
                      mailbox_size=ROSTER_MAILBOX),
            # The report stream (bus.url), read from its start and handed to
            # the roster. After it: it stops first, before the roster does.
            *([report_feed_spec(bus, roster_path=ROSTER, directory_path=DIRECTORY, topology_path=TOPOLOGY,
                                directory=directory_view, stale_after=settings.agents.stale_threshold)]
              if bus is not None else []),
        ],
    )


async def resume_open_queues(system: ActorSystem, reader: StoreReader) -> int:
    """Start the queue actor of every deployment with open commands; answers how many.

    A queue actor starts on its deployment's first request, and its timer is what
    expires undelivered commands and times out unanswered ones: after a restart,
    a deployment whose agent is gone would otherwise keep them open for ever.
    """
    hashes = await reader.deployments_with_open_commands()
    owner = system.lookup(QUEUE_OWNER)
    for deployment_hash in hashes:
        # Any message starts the queue; a snapshot changes nothing.
        await owner.send(ForDeployment(deployment_hash, Snapshot()))
    if hashes:
        log.info("resumed %d deployment queue(s) with open commands", len(hashes))
    return len(hashes)
