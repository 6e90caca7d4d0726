"""The alerts actor under a fault, in-process with the real tree."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import outcome
import pytest

from trioscope.actors.alerts import (
    BOOK_RESTORE_WINDOW, LEDGER_TTL, ActiveAlerts, AgentSeen, AlertsActor, AlertsState, Deliver, ResyncAlerts, _Evaluate,
)
from trioscope.actors.notifier import Publish
from trioscope.actors.refusals import NotRecorded, StoreFull
from trioscope.actors.store import Commit, StoreActor, commit
from trioscope.config import Settings
from trioscope.domain.alerts import AlertNotice, audit_details
from trioscope.domain.command_stats import CommandStats, TenantOutcomes
from trioscope.domain.deployments import AgentDirectory, AgentRecord, AgentStatus, Deployment
from trioscope.domain.metric_labels import TenantLabels
from trioscope.runtime import Actor, ActorRef, ActorSpec, Published, SupervisorSpec, open_actor_system
from trioscope.store import AuditEntry, StoreReader
from trioscope.system import ALERTS, supervision_tree


class Poison:
    """A message the alerts actor does not understand: handling it raises."""


def disk_full(status: str) -> AlertNotice:
    return AlertNotice(name="DiskFull", status=status, tenant="acme", severity="critical", summary="Disk full",
                       labels={"alertname": "DiskFull"}, fingerprint="c0ffee", starts_at="2026-12-02T10:00:00Z",
                       source="alertmanager")


async def test_a_crash_loses_no_firing_alert(settings):
    """The firing alerts outlive the actor: it used to restart with none, and an
    alert that was firing was no longer listed (nor its end ever told)."""
    async with open_actor_system(supervision_tree(settings)) as system:
        alerts = system.lookup(ALERTS)
        assert await alerts.ask(Deliver((disk_full("firing"),), actor="alertmanager")) == 1
        listed = await alerts.ask(ActiveAlerts("acme"))
        assert [n.name for n in listed] == ["DiskFull"]
        alerts.tell(Poison())
        assert await alerts.ask(ActiveAlerts("acme")) == listed  # answered by the restarted actor
        node = next(c for c in system.snapshot().root.children if c.path == ALERTS)
        assert node.restarts == 1
        await alerts.ask(Deliver((disk_full("resolved"),), actor="alertmanager"))
        assert await alerts.ask(ActiveAlerts("acme")) == []


class FlakyStore(Actor):
    """The store, whose first commit fails (a database that was locked)."""

    def __init__(self, committed: list[object]) -> None:
        self.committed = committed
        self.failed = False

    async def handle(self, message: object) -> object:
        if isinstance(message, Commit):
            if not self.failed:
                self.failed = True
                message.receipt.settle(outcome.Error(RuntimeError("database is locked")))
            else:
                self.committed.extend(message.writes)
                message.receipt.settle(outcome.Value(None))
            return None
        return await super().handle(message)


class Notifier(Actor):
    async def handle(self, message: object) -> object:
        return None


def silent_agent_tree(settings: Settings, store: Callable[[], Actor]) -> SupervisorSpec:
    """The alerts actor, ``store`` and a notifier, with one agent of tenant
    acme silent past the threshold (the server started long ago)."""
    directory = AgentDirectory()
    directory.deployments["d1"] = Deployment(hash="d1", tenant="acme", user_id="u", created_at=0.0,
                                             enrollment_hash=None)
    directory.agents["silent"] = AgentRecord(id="silent", deployment_hash="d1", token_hash="t",
                                             status=AgentStatus.ACTIVE, created_at=0.0)
    state = AlertsState.for_settings(settings)
    state.started = 0.0
    return SupervisorSpec(name="root", children=[
        ActorSpec(name="store", factory=store),
        ActorSpec(name="notifier", factory=Notifier),
        ActorSpec(name="alerts", factory=lambda: AlertsActor(
            settings, store_path="/root/store", notifier_path="/root/notifier", directory=Published(directory),
            command_stats=CommandStats(TenantLabels(10)), state=state)),
    ])


async def test_an_alert_whose_record_failed_is_told_at_the_next_evaluation(settings: Settings):
    """The book must not say an alert fired that was never told (the first
    version updated it before the audit record was committed: after a failed
    commit the alert was listed as firing, never told, and later resolved).
    A store that fails does not crash the actor either: its state would then
    hang on every such outage."""
    committed: list[object] = []
    async with open_actor_system(silent_agent_tree(settings, lambda: FlakyStore(committed))) as system:
        alerts = system.lookup("/root/alerts")
        await alerts.ask(_Evaluate())  # the record is not committed
        assert await alerts.ask(ActiveAlerts("acme")) == []  # so not told, and not listed
        await alerts.ask(_Evaluate())
        assert [n.name for n in await alerts.ask(ActiveAlerts("acme"))] == ["AgentOffline"]
        assert [w.action for w in committed] == ["alert.firing"]  # type: ignore[attr-defined]
        assert next(c for c in system.snapshot().root.children if c.path == "/root/alerts").restarts == 0


class FullStore(Actor):
    """The store on a full disk: every commit refused."""

    async def handle(self, message: object) -> object:
        if isinstance(message, Commit):
            message.receipt.settle(outcome.Error(StoreFull("OperationalError: database or disk is full")))
            return None
        return await super().handle(message)


async def test_alert_changes_not_recorded_are_said_once_a_minute(settings: Settings,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """On a full disk "N alert change(s) not told yet" was a warning at every
    evaluation (every few seconds), beside the store's own once a minute."""
    caplog.set_level(logging.DEBUG, logger="trioscope.actors.alerts")
    async with open_actor_system(silent_agent_tree(settings, FullStore)) as system:
        alerts = system.lookup("/root/alerts")
        for _ in range(4):
            await alerts.ask(_Evaluate())
    said = [r for r in caplog.records if getattr(r, "event", None) == "alerts_not_told"]
    assert len(said) == 4 and [r.levelno for r in said] == [logging.WARNING] + [logging.DEBUG] * 3


async def test_a_delivery_whose_record_failed_is_refused_and_the_actor_carries_on(settings: Settings):
    """Refused (503 at the webhook: Alertmanager resends), where it crashed the actor (500)."""
    committed: list[object] = []
    tree = SupervisorSpec(name="root", children=[
        ActorSpec(name="store", factory=lambda: FlakyStore(committed)),
        ActorSpec(name="notifier", factory=Notifier),
        ActorSpec(name="alerts", factory=lambda: AlertsActor(
            settings, store_path="/root/store", notifier_path="/root/notifier", directory=Published(AgentDirectory()),
            command_stats=CommandStats(TenantLabels(10)))),
    ])
    async with open_actor_system(tree) as system:
        alerts = system.lookup("/root/alerts")
        with pytest.raises(NotRecorded, match="database is locked"):
            await alerts.ask(Deliver((disk_full("firing"),), actor="alertmanager"))
        assert await alerts.ask(ActiveAlerts("acme")) == []  # not recorded: not listed
        assert await alerts.ask(Deliver((disk_full("firing"),), actor="alertmanager")) == 1
        assert [n.name for n in await alerts.ask(ActiveAlerts("acme"))] == ["DiskFull"]
        assert next(c for c in system.snapshot().root.children if c.path == "/root/alerts").restarts == 0


HOUR = 3600.0
T0 = 1_800_000_000.0


class Told(Actor):
    """The notifier: keeps the status of each alert event published; answers any other message
    (asked after an alert change, its answer says every event before it was kept)."""

    def __init__(self, told: list[str]) -> None:
        self.told = told

    async def handle(self, message: object) -> object:
        if isinstance(message, Publish):
            self.told.append(message.event["status"])
        return None


@attrs.define
class AlertsOnDisk:
    """An alerts actor with an SQLite store and its own clock (``now``): one run of the server."""

    alerts: ActorRef
    store: ActorRef
    notifier: ActorRef
    reader: StoreReader
    now: list[float]
    told: list[str]

    async def deliver(self, status: str, at: float) -> None:
        self.now[0] = at
        assert await self.alerts.ask(Deliver((disk_full(status),), actor="alertmanager")) == 1

    async def listed(self, at: float) -> list[str]:
        self.now[0] = at
        return [n.name for n in await self.alerts.ask(ActiveAlerts("acme"))]

    async def told_so_far(self) -> list[str]:
        await self.notifier.ask("flush")  # after every event the alerts actor published before
        return self.told

    async def audited(self) -> list[str]:
        records, _ = await self.reader.audit("acme", action=None, actor=None, since=None, until=None, limit=50,
                                             offset=0)
        return [r.entry.action for r in reversed(records)]


@asynccontextmanager
async def alerts_on_disk(path: Path, now: list[float]) -> AsyncIterator[AlertsOnDisk]:
    settings = Settings.defaults()  # (the store is at ``path``)
    reader = StoreReader(path)
    told: list[str] = []
    tree = SupervisorSpec(name="root", children=[
        ActorSpec(name="store", factory=lambda: StoreActor(path, reader)),
        ActorSpec(name="notifier", factory=lambda: Told(told)),
        ActorSpec(name="alerts", factory=lambda: AlertsActor(
            settings, store_path="/root/store", notifier_path="/root/notifier", directory=Published(AgentDirectory()),
            command_stats=CommandStats(TenantLabels(10)), clock=lambda: now[0], reader=reader)),
    ])
    try:
        async with open_actor_system(tree) as system:
            yield AlertsOnDisk(system.lookup("/root/alerts"), system.lookup("/root/store"),
                               system.lookup("/root/notifier"), reader, now, told)
    finally:
        reader.close()


async def firing_for_30_hours(server: AlertsOnDisk) -> None:
    """DiskFull fires at T0, and Alertmanager repeats it every 4 h (repeat_interval) until T0 + 28 h."""
    await server.deliver("firing", T0)
    for hours in range(4, 29, 4):
        await server.deliver("firing", T0 + hours * HOUR)
    assert await server.told_so_far() == ["firing"]
    assert await server.audited() == ["alert.firing"]  # repeats are not news: not audited


async def test_a_resync_keeps_an_alert_firing_longer_than_a_day(tmp_path: Path) -> None:
    """A resync (the change feed reconnected) rebuilt the listing from the audit
    records of the last 24 h, each as heard of when recorded: an alert fired
    30 h ago and repeated since was dropped, and its next repeat told and
    audited again as new."""
    async with alerts_on_disk(tmp_path / "db.sqlite3", [T0]) as server:
        await firing_for_30_hours(server)
        server.now[0] = T0 + 30 * HOUR
        await server.alerts.ask(ResyncAlerts())
        assert await server.listed(T0 + 30 * HOUR) == ["DiskFull"]
        await server.deliver("firing", T0 + 32 * HOUR)  # the next repeat: not news
        assert await server.told_so_far() == ["firing"]
        assert await server.audited() == ["alert.firing"]
        assert await server.listed(T0 + 32 * HOUR + LEDGER_TTL) == ["DiskFull"]  # heard of at T0 + 32 h
        assert await server.listed(T0 + 33 * HOUR + LEDGER_TTL) == []  # then not again for a day: forgotten


async def test_a_resync_takes_what_other_replicas_changed_and_keeps_the_rest(tmp_path: Path) -> None:
    """What the audit log says changed while the feed was away: an alert that
    resolved is dropped, one that fired is added (as heard of when audited);
    the others are kept as they were, none told (their events are lost)."""
    def record(name: str, fingerprint: str, status: str, at: float) -> AuditEntry:
        notice = attrs.evolve(disk_full(status), name=name, fingerprint=fingerprint)
        return AuditEntry(at=at, tenant="acme", actor="alertmanager", action=f"alert.{status}",
                          resource_type="alert", resource_id=fingerprint, details=audit_details(notice))

    async with alerts_on_disk(tmp_path / "db.sqlite3", [T0]) as server:
        await server.deliver("firing", T0)  # DiskFull (c0ffee), kept
        await commit(server.store, [record("Gone", "0bad", "firing", T0)])
        await server.alerts.ask(ResyncAlerts())
        assert await server.listed(T0) == ["DiskFull", "Gone"]
        # Another replica's changes, unannounced:
        await commit(server.store, [record("Gone", "0bad", "resolved", T0 + HOUR),
                                    record("New", "f00d", "firing", T0 + 2 * HOUR)])
        server.now[0] = T0 + 3 * HOUR
        await server.alerts.ask(ResyncAlerts())
        assert await server.listed(T0 + 3 * HOUR) == ["DiskFull", "New"]
        assert await server.listed(T0 + 2 * HOUR + LEDGER_TTL) == ["New"]  # DiskFull not heard of since T0
        assert await server.listed(T0 + 3 * HOUR + LEDGER_TTL) == []
        assert await server.told_so_far() == ["firing"]


async def test_a_restart_keeps_an_alert_firing_longer_than_a_day(tmp_path: Path) -> None:
    """At start only the records of the last 24 h were read, each as heard of
    when recorded: an alert fired 30 h ago and repeated since was no longer
    listed, and its next repeat was told and audited again as new. A record
    says when its alert was first told, not when it was last repeated: one
    read back counts as heard of at the start."""
    now = [T0]
    async with alerts_on_disk(tmp_path / "db.sqlite3", now) as server:
        await firing_for_30_hours(server)
    now[0] = T0 + 30 * HOUR
    async with alerts_on_disk(tmp_path / "db.sqlite3", now) as server:
        assert await server.listed(T0 + 30 * HOUR) == ["DiskFull"]
        await server.deliver("firing", T0 + 32 * HOUR)  # the next repeat: not news
        assert await server.told_so_far() == []
        assert await server.audited() == ["alert.firing"]
        await server.deliver("resolved", T0 + 33 * HOUR)  # its end is
        assert await server.told_so_far() == ["resolved"]
        assert await server.listed(T0 + 33 * HOUR) == []


async def test_an_alert_read_back_at_a_restart_and_not_heard_of_again_is_forgotten_a_day_later(
        tmp_path: Path) -> None:
    """The price of counting from the start: one whose end was lost is listed
    for a day more; and one told over ``BOOK_RESTORE_WINDOW`` ago is not read back."""
    now = [T0]
    async with alerts_on_disk(tmp_path / "db.sqlite3", now) as server:
        await server.deliver("firing", T0)
    now[0] = start = T0 + 2 * HOUR
    async with alerts_on_disk(tmp_path / "db.sqlite3", now) as server:
        assert await server.listed(start + LEDGER_TTL) == ["DiskFull"]
        assert await server.listed(start + LEDGER_TTL + 1) == []
    now[0] = T0 + BOOK_RESTORE_WINDOW + 1
    async with alerts_on_disk(tmp_path / "db.sqlite3", now) as server:
        assert await server.listed(now[0]) == []


async def test_tenants_idle_for_a_window_are_forgotten_with_the_failure_rule_off(settings: Settings):
    """The outcomes are counted for the rule alone: with it off they were never forgotten."""
    off = attrs.evolve(settings, alerts=attrs.evolve(settings.alerts, command_failure_percent=0))
    stats = CommandStats(TenantLabels(10))
    stats.tenants["long-gone"] = TenantOutcomes(3, 1)
    stats._last_finished["long-gone"] = 0.0  # finished at the epoch: idle for far longer than a window
    tree = SupervisorSpec(name="root", children=[
        ActorSpec(name="store", factory=lambda: FlakyStore([])),
        ActorSpec(name="notifier", factory=Notifier),
        ActorSpec(name="alerts", factory=lambda: AlertsActor(
            off, store_path="/root/store", notifier_path="/root/notifier", directory=Published(AgentDirectory()),
            command_stats=stats)),
    ])
    async with open_actor_system(tree) as system:
        await system.lookup("/root/alerts").ask(_Evaluate())
    assert stats.tenants == {}


class Recording(Actor):
    """The store, committing every group: what was committed kept."""

    def __init__(self, committed: list[object]) -> None:
        self.committed = committed

    async def handle(self, message: object) -> object:
        if isinstance(message, Commit):
            self.committed.extend(message.writes)
            message.receipt.settle(outcome.Value(None))
            return None
        return await super().handle(message)


@pytest.mark.parametrize("step", [600.0, 2 * HOUR, -600.0, -2 * HOUR])
async def test_the_servers_clock_set_makes_no_agent_offline_nor_hides_one(settings: Settings, step: float) -> None:
    """Wall times measured across a step: set forward (NTP, a VM resumed),
    every agent heard from before it was offline at once (a critical alert
    for each); set back, one silent since was found only as much later."""
    after = settings.alerts.agent_offline_after
    wall, mono = [T0], [1000.0]
    directory = AgentDirectory()
    directory.deployments["d1"] = Deployment(hash="d1", tenant="acme", user_id="u", created_at=0.0,
                                             enrollment_hash=None)
    directory.agents["a"] = AgentRecord(id="a", deployment_hash="d1", token_hash="t", status=AgentStatus.ACTIVE,
                                        created_at=0.0)
    committed: list[object] = []
    tree = SupervisorSpec(name="root", children=[
        ActorSpec(name="store", factory=lambda: Recording(committed)),
        ActorSpec(name="notifier", factory=Notifier),
        ActorSpec(name="alerts", factory=lambda: AlertsActor(
            settings, store_path="/root/store", notifier_path="/root/notifier", directory=Published(directory),
            command_stats=CommandStats(TenantLabels(10)), clock=lambda: wall[0], monotonic=lambda: mono[0])),
    ])

    def elapse(seconds: float, *, step: float = 0.0) -> None:
        wall[0] += seconds + step
        mono[0] += seconds

    async with open_actor_system(tree) as system:
        alerts = system.lookup("/root/alerts")
        alerts.tell(AgentSeen("a", mono[0]))
        await alerts.ask(_Evaluate())
        elapse(10.0, step=step)
        await alerts.ask(_Evaluate())
        assert await alerts.ask(ActiveAlerts("acme")) == []  # heard from 10 s ago
        elapse(after - 10.0 - 1.0)
        await alerts.ask(_Evaluate())
        assert await alerts.ask(ActiveAlerts("acme")) == []  # still within the threshold
        elapse(2.0)
        await alerts.ask(_Evaluate())  # silent for longer than the threshold
        assert [n.name for n in await alerts.ask(ActiveAlerts("acme"))] == ["AgentOffline"]
        alerts.tell(AgentSeen("a", mono[0]))  # heard again: resolved at once
        assert await alerts.ask(ActiveAlerts("acme")) == []
    assert [w.action for w in committed] == ["alert.firing", "alert.resolved"]  # type: ignore[attr-defined]
