"""The alerts actor (``/root/alerts``): alerts to users, as ``system_alert``
events on their ``/ws/user`` sockets and as audit records.

Two sources, one way out. Without Prometheus, it evaluates the server's own
rules every ``alerts.evaluation_interval`` (``domain.alerts``: AgentOffline for
an enrolled agent silent past ``alerts.agent_offline_after``,
HighCommandFailureRate over the deployment queues' counts), and each alert is
told once when it fires and once when it resolves. With Prometheus, the
webhook hands it what Alertmanager sends (``Deliver``): an alert already
firing is not told again, nor the end of one that is not firing (Alertmanager
sends whole groups again). An alert is its tenant's: one fingerprint sent for
two tenants is two alerts (``AlertLedger``), as the audit log keeps them.
Either way the audit record is committed before the event is published.

The audit log is also where the alerts firing are kept: at start it reads the
newest record of each alert back (``AlertsState.restored``). With replicas,
each alert change another replica told (and audited) comes from the change
feed (``Heard``) and is told to this replica's users too.

The HTTP edge tells it when an enrolled agent is heard from (``AgentSeen``),
at most every few seconds per agent, not on every request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from trioscope.config import ALERT_RULES, Settings, example_file
from trioscope.domain.alerts import (
    AGENT_OFFLINE, FIRING, HIGH_COMMAND_FAILURE_RATE, AgentSighting, AlertBook, AlertLedger, AlertNotice,
    FailureWindow, audit_details, last_heard, notice_from_audit, offline_agents,
)
from trioscope.domain.command_stats import CommandStats
from trioscope.domain.deployments import AgentDirectory, AgentRecord, AgentStatus, agent_status_event
from trioscope.domain.rates import Lull
from trioscope.domain.wall_clock import WallSteps
from trioscope.runtime import Actor, ActorRef, Published
from trioscope.store import AuditEntry, AuditRecord, StoreReader

from .notifier import publish
from .refusals import NotRecorded
from .store import commit

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system:alerts"
"""Who the audit log says raised the server's own alerts."""


@attrs.frozen
class AgentSeen:
    """An enrolled agent made a request that passed every check, at ``tick``
    (``trio.current_time()``, the actor's monotonic clock): taken as a wall time where it is handled, by the
    wall clock then (``WallSteps``), so that the clock set between the two is
    no silence."""

    agent_id: str
    tick: float


@attrs.frozen
class Deliver:
    """Alerts from elsewhere (Alertmanager's webhook): audited as ``actor``, then
    published. Answered with how many were delivered, once they are audited."""

    notices: tuple[AlertNotice, ...]
    actor: str
    address: str | None = None


@attrs.frozen
class Heard:
    """Alert changes another replica told its users and audited (the change
    feed's): told to this replica's users too, each unless already known."""

    notices: tuple[AlertNotice, ...]


@attrs.frozen
class ResyncAlerts:
    """Merge the changes of the alerts delivered from elsewhere that the store
    holds (the change feed reconnected: changes meanwhile were not announced)
    into those known firing: each resolved meanwhile is dropped, each fired
    meanwhile added; the others stay as they are (and when they were last
    heard of: Alertmanager's repeats refresh it, and they are not audited)."""


@attrs.frozen
class ActiveAlerts:
    """Answered with the alerts of ``tenant`` firing now: the server's own and
    those Alertmanager delivered (not resolved since), oldest first."""

    tenant: str


LEDGER_LIMIT = 10_000
"""Alertmanager's alerts remembered as firing, over all tenants (then the
tenant with the most loses its oldest)."""
LEDGER_TENANT_LIMIT = 250
"""Alertmanager's alerts remembered as firing, per tenant: with each kept
within ``domain.alerts.kept``'s bounds (about 5 KiB), a tenant's listing
stays near a megabyte."""
LEDGER_TTL = 24 * 3600.0
"""Seconds an Alertmanager alert stays listed without news of it."""
BOOK_RESTORE_WINDOW = 7 * 24 * 3600.0
"""How far back the audit log is read at start for the alerts firing (an
agent may stay offline for days; an Alertmanager alert told longer ago, and
repeated since, is not listed after a restart until its next repeat, which
is told again)."""
RESTORE_TIMEOUT = 60.0


@attrs.frozen
class _Evaluate:
    pass


def sighting_resolution(settings: Settings) -> float:
    """How stale the actor's idea of when an agent was last heard from may be:
    the edge tells it again only after this long. A quarter of the offline
    threshold (so an alert is never raised for an agent heard from in time),
    at most 15 s."""
    return min(15.0, settings.alerts.agent_offline_after / 4)


@attrs.define(eq=False)
class AlertsState:
    """What the actor knows, kept for its spec (``Kept``), not made by the
    actor: a crash restarts it with the alerts firing and the sightings as
    they were, so each alert is still told once when it fires and once when it
    resolves (a restart used to tell a firing AgentOffline again and never
    its end). The book keeps a change only once it is told (``_evaluate``)."""

    failures: FailureWindow
    seen: dict[str, float] = attrs.Factory(dict)
    """Enrolled agent id -> when it was last heard from (unix seconds)."""
    book: AlertBook = attrs.Factory(AlertBook)
    """The server's own alerts firing now."""
    delivered: AlertLedger = attrs.Factory(
        lambda: AlertLedger(limit=LEDGER_LIMIT, tenant_limit=LEDGER_TENANT_LIMIT, ttl=LEDGER_TTL))
    """Alertmanager's alerts firing now (``GET /api/v1/alerts`` lists both)."""
    restored: bool = False
    """Whether the alerts firing were read back from the audit log (once, by
    the first incarnation: a restart of the server used to forget them, tell
    a firing AgentOffline again and never tell the end of one)."""
    started: float | None = None
    """When the first incarnation started (unix seconds): an agent not heard
    from since counts from it."""
    wall: WallSteps = attrs.Factory(WallSteps)
    """The wall clock's steps, followed by ``seen`` and ``started`` (``AlertsActor._now``)."""

    @classmethod
    def for_settings(cls, settings: Settings) -> AlertsState:
        return cls(FailureWindow(settings.alerts.command_failure_window))


NOT_TOLD_SAID_EVERY = 60.0
"""Seconds between two warnings that alert changes could not be recorded (a full disk, the store failing)."""


class AlertsActor(Actor):
    refusals = (NotRecorded,)
    """A delivery whose audit record cannot be committed is refused (503 at
    the webhook: Alertmanager resends), not a crash."""

    def __init__(self, settings: Settings, *, store_path: str, notifier_path: str,
                 directory: Published[AgentDirectory], command_stats: CommandStats,
                 own_rules: bool = True, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = trio.current_time,
                 state: AlertsState | None = None, reader: StoreReader | None = None) -> None:
        """``state``: what an earlier incarnation knew (the spec's ``Kept``); None: a state of its own.
        ``reader``: where the alerts firing are read back from at start (None: nowhere)."""
        self.settings = settings.alerts
        self.own_rules = own_rules
        """Whether this server evaluates AgentOffline and HighCommandFailureRate itself.
        Not with replicas: each sees only the requests that reached it, so an
        agent polling another replica would be found offline here."""
        self.store_path = store_path
        self.notifier_path = notifier_path
        self.directory = directory
        self.command_stats = command_stats
        self.clock = clock
        self.monotonic = monotonic
        self.reader = reader
        self.state = state if state is not None else AlertsState.for_settings(settings)
        self._not_told_said = Lull(NOT_TOLD_SAID_EVERY)

    async def on_start(self) -> None:
        system = self.context.system
        self.store: ActorRef = system.lookup(self.store_path)
        self.notifier: ActorRef = system.lookup(self.notifier_path)
        # An agent not heard from since the start counts from it: silent across
        # a restart of the server, it is still found offline, once the threshold has passed.
        if self.state.started is None:
            self.state.started = self._now()
        if not self.state.restored and self.reader is not None:
            await self._restore()
            self.state.restored = True
        rules_on = self.settings.agent_offline_after > 0 or self.settings.command_failure_percent > 0
        if rules_on and not self.own_rules:
            log.info("built-in alert rules are off: with a shared database each replica sees only its own "
                     "agents' requests; let Prometheus evaluate %s over all replicas", example_file(ALERT_RULES))
        elif rules_on:
            self.context.every(self.settings.evaluation_interval, _Evaluate())

    async def handle(self, message: Any) -> Any:
        if isinstance(message, AgentSeen):
            now = self._now()
            at = min(now, message.tick + self.state.wall.offset(now, self.monotonic()))
            self.state.seen[message.agent_id] = max(at, self.state.seen.get(message.agent_id, 0.0))
            if any(n.name == AGENT_OFFLINE and n.labels.get("agent") == message.agent_id
                   for n in self.state.book.active.values()):
                await self._evaluate(now, agents_only=True)  # resolved now, not at the next tick
            return None
        if isinstance(message, _Evaluate):
            await self._evaluate(self._now())
            return None
        if isinstance(message, Deliver):
            news = self.state.delivered.news(message.notices, self.clock())
            if news:
                try:
                    await self._deliver(news, message.actor, message.address)
                except Exception as exc:  # noqa: BLE001  # the store's failure, whatever it is: the sender resends
                    raise NotRecorded("alerts", exc) from None
            now = self.clock()
            for notice in message.notices:  # repeats too: they keep an alert listed
                self.state.delivered.record(notice, now)
            return len(message.notices)
        if isinstance(message, Heard):
            now = self.clock()
            for notice in message.notices:
                if notice.source != "trioscope" and self.state.delivered.record(notice, now):
                    self._publish(notice)
            return None
        if isinstance(message, ResyncAlerts):
            now = self.clock()
            records = None if self.reader is None else await self._read(now - LEDGER_TTL)
            if records is not None:
                self._merge_delivered(records, now)
            return None
        if isinstance(message, ActiveAlerts):
            own = [n for n in self.state.book.active.values() if n.tenant == message.tenant]
            return own + self.state.delivered.active(message.tenant, self.clock())
        return await super().handle(message)

    def _now(self) -> float:
        """The wall clock, with when each agent was last heard from (and the
        start) moved by as much as the clock was set since the last look
        (``WallSteps``): measured across the step, every agent was silent for
        as long as a step forward (a critical AgentOffline for each at once, a
        VM resumed or NTP setting a clock that was behind), and none could be
        for as long as a step back."""
        now = self.clock()
        moved = self.state.wall.step(now, self.monotonic())
        if moved:
            self.state.seen = {agent: at + moved for agent, at in self.state.seen.items()}
            if self.state.started is not None:
                self.state.started += moved
            log.warning("the server's clock was set %s by %.0f s: when agents were last heard from moved with it, "
                        "so the step makes no agent offline", "forward" if moved > 0 else "back", abs(moved),
                        extra={"event": "clock_set", "seconds": round(moved, 3)})
        return now

    async def _evaluate(self, now: float, *, agents_only: bool = False) -> None:
        book = self.state.book
        before = dict(book.active)
        changes: list[AlertNotice] = []
        if self.settings.agent_offline_after > 0:
            offline = offline_agents(self._sightings(), now, self.settings.agent_offline_after)
            changes += book.update(offline, now, only=[AGENT_OFFLINE])
        if not agents_only:  # with the alert off too: the outcomes are kept for it alone
            self.command_stats.forget_idle(now, self.state.failures.window)
        if self.settings.command_failure_percent > 0 and not agents_only:
            self.state.failures.observe(self.command_stats.outcomes(), now)
            failing = self.state.failures.failing(now, ratio=self.settings.command_failure_percent / 100,
                                            min_commands=self.settings.command_failure_min_commands)
            changes += book.update(failing, now, only=[HIGH_COMMAND_FAILURE_RATE])
        if not changes:
            return
        try:
            await self._deliver(changes, SYSTEM_ACTOR, None)
        except Exception as exc:  # noqa: BLE001  # the store's failure, whatever it is: told at the next evaluation
            # Not told (the audit record, committed first, could not be): the
            # book must not say they were, or they never would be. The next
            # evaluation finds the same changes; crashing would not record
            # them sooner, and a store away for a while would crash it again
            # and again.
            # Said once a minute, at debug between: on a full disk each evaluation said it.
            book.active = before
            log.log(self._not_told_said.level(time.monotonic()),
                    "%d alert change(s) not told yet: their audit record could not be committed (%s: %s); "
                    "trying again at the next evaluation", len(changes), type(exc).__name__, exc,
                    extra={"event": "alerts_not_told", "changes": len(changes)})
        except BaseException:
            book.active = before  # cancelled (the server stopping): the book as before, for a restart to tell
            raise
        else:
            self._tell_liveness(changes)

    def _tell_liveness(self, changes: list[AlertNotice]) -> None:
        """The seed's ``agent_status`` event to each agent's deployment's user
        as its AgentOffline fires (``offline``) and resolves (``online``):
        what a dashboard shows beside the agent, not only as an alert."""
        directory = self.directory.value
        for n in changes:
            if n.name != AGENT_OFFLINE:
                continue
            agent = directory.agents.get(n.labels.get("agent", ""))
            deployment = None if agent is None else directory.deployments.get(agent.deployment_hash)
            if agent is None or deployment is None or agent.status is not AgentStatus.ACTIVE:
                continue  # retired (its alert resolves so): its retirement was told, ``offline``
            publish(self.notifier, deployment.tenant, deployment.user_id,
                    agent_status_event(agent, deployment, online=n.status != FIRING, last_seen=self._last_seen(agent)))

    def _last_seen(self, agent: AgentRecord) -> float:
        """When ``agent`` was last heard from; one not heard from since this
        server started counts from the start (or its enrolment, if later)."""
        started = self.state.started or 0.0  # set by on_start, before any evaluation
        return self.state.seen.get(agent.id, max(started, agent.created_at))

    def _sightings(self) -> list[AgentSighting]:
        directory = self.directory.value
        sightings = []
        for agent in directory.agents.values():
            deployment = directory.deployments.get(agent.deployment_hash)
            if agent.status is not AgentStatus.ACTIVE or deployment is None:
                continue
            last = self._last_seen(agent)
            sightings.append(AgentSighting(agent_id=agent.id, deployment_hash=agent.deployment_hash,
                                           tenant=deployment.tenant, last_seen=last))
        if len(self.state.seen) > 2 * len(sightings) + 1024:  # retired and forgotten agents: drop theirs
            active = {s.agent_id for s in sightings}
            self.state.seen = {a: t for a, t in self.state.seen.items() if a in active}
        return sightings

    async def _deliver(self, notices: Any, actor: str, address: str | None) -> None:
        # The whole notice in the record: the alerts firing are rebuilt from
        # it at start, and other replicas hear of it (its change notification).
        now = self.clock()
        await commit(self.store, [
            AuditEntry(at=now, tenant=n.tenant, actor=actor, action=f"alert.{n.status}", resource_type="alert",
                       resource_id=n.fingerprint, address=address, details=audit_details(n))
            for n in notices])
        for n in notices:
            self._publish(n)

    def _publish(self, n: AlertNotice) -> None:
        publish(self.notifier, n.tenant, None, n.event())
        log.info("alert %s %s for tenant %s", n.name, n.status, n.tenant,
                 extra={"event": "alert_" + n.status, "alert": n.name, "tenant": n.tenant,
                        "fingerprint": n.fingerprint})

    async def _read(self, since: float) -> list[AuditRecord] | None:
        """The newest alert change record of each alert since ``since``; None
        (logged) if the store cannot be read: the alerts go on from what they know."""
        assert self.reader is not None
        try:
            with trio.fail_after(RESTORE_TIMEOUT):
                return await self.reader.latest_alerts(since=since)
        except Exception as exc:  # noqa: BLE001  # the store's failure, whatever it is
            log.warning("cannot read the alerts firing from the audit log (%s: %s); going on without them",
                        type(exc).__name__, exc, extra={"event": "alerts_not_restored"})
            return None

    async def _restore(self) -> None:
        """The alerts firing, as the audit log's newest record of each (within
        ``BOOK_RESTORE_WINDOW``) says: Alertmanager's, and with the server's
        own rules on, theirs, so that one still firing is not told again and
        one that cleared meanwhile is told resolved at the first evaluation.

        Alertmanager's count as heard of at the start, not when recorded: a
        record says when its alert was first told, not when it was last
        repeated (repeats are not news, so not audited). Counted from the
        record, one firing longer than ``LEDGER_TTL`` was dropped at every
        restart and its next repeat told and audited again as new. The price:
        one that ended unheard of (its end lost, or sent after it was
        forgotten) stays listed until ``LEDGER_TTL`` after the start."""
        now = self.clock()
        records = await self._read(now - max(LEDGER_TTL, BOOK_RESTORE_WINDOW))
        if records is None:
            return
        for record in records:  # oldest first: the ledger keeps them in that order
            notice = _notice_of(record)
            if notice is not None and notice.source != "trioscope":
                self.state.delivered.record(notice, now)
        rules = {AGENT_OFFLINE: self.settings.agent_offline_after > 0,
                 HIGH_COMMAND_FAILURE_RATE: self.settings.command_failure_percent > 0}
        own = 0
        for record in records:
            notice = _notice_of(record)
            if notice is None or notice.source != "trioscope" or not self.own_rules or not rules.get(notice.name):
                continue
            self.state.book.active[notice.fingerprint] = notice
            own += 1
            heard = last_heard(notice, self.settings.agent_offline_after)
            if heard is not None:  # silent since: still offline, unless heard from now
                self.state.seen[heard[0]] = max(heard[1], self.state.seen.get(heard[0], heard[1]))
        if own or len(self.state.delivered):
            log.info("%d alert(s) firing, read back from the audit log", own + len(self.state.delivered),
                     extra={"event": "alerts_restored"})

    def _merge_delivered(self, records: list[AuditRecord], now: float) -> None:
        """``records`` (each alert's newest since ``LEDGER_TTL`` ago) merged
        into the alerts delivered from elsewhere known firing, not told (their
        events are lost). A change missed happened while the feed was away, so
        it is among them; an alert known firing whose record is older was told
        long ago and heard of since (it would be forgotten otherwise): kept."""
        ledger = self.state.delivered
        for record in records:  # oldest first: the ledger keeps them in that order
            e = record.entry
            notice = notice_from_audit(e.tenant, e.resource_id, e.action, e.details)
            if notice is None or notice.source == "trioscope":
                continue
            if notice.status != FIRING:
                ledger.record(notice, now)  # resolved meanwhile: dropped
            elif ledger.news((notice,), now):  # fired meanwhile: heard of when it was audited
                ledger.record(notice, e.at)
            # else firing here already: when it was last heard of is newer than its record


def _notice_of(record: AuditRecord) -> AlertNotice | None:
    """The alert a record says fires (None: resolved, or not an alert's)."""
    e = record.entry
    notice = notice_from_audit(e.tenant, e.resource_id, e.action, e.details)
    return notice if notice is not None and notice.status == FIRING else None
