"""The alerts actor under a fault, in-process with the real tree."""

from __future__ import annotations

import outcome
import pytest

from trioscope.actors.alerts import ActiveAlerts, AlertsActor, AlertsState, Deliver, _Evaluate
from trioscope.actors.refusals import NotRecorded
from trioscope.actors.store import Commit
from trioscope.config import Settings
from trioscope.domain.alerts import AlertNotice
from trioscope.domain.command_stats import CommandStats
from trioscope.domain.deployments import AgentDirectory, AgentRecord, AgentStatus, Deployment
from trioscope.domain.metric_labels import TenantLabels
from trioscope.runtime import Actor, ActorSpec, Published, SupervisorSpec, open_actor_system
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


async def test_an_alert_whose_record_failed_is_told_at_the_next_evaluation():
    """The book must not say an alert fired that was never told (the first
    version updated it before the audit record was committed: after a failed
    commit the alert was listed as firing, never told, and later resolved).
    A store that fails does not crash the actor either: its state would then
    hang on every such outage."""
    settings = Settings.defaults()
    directory = AgentDirectory()
    directory.deployments["d1"] = Deployment(hash="d1", tenant="acme", user_id="u", created_at=0.0,
                                             enrollment_hash=None)
    directory.agents["silent"] = AgentRecord(id="silent", deployment_hash="d1", token_hash="t",
                                             status=AgentStatus.ACTIVE, created_at=0.0)
    state = AlertsState.for_settings(settings)
    state.started = 0.0  # the server started long ago: the agent is silent past the threshold
    committed: list[object] = []
    tree = SupervisorSpec(name="root", children=[
        ActorSpec(name="store", factory=lambda: FlakyStore(committed)),
        ActorSpec(name="notifier", factory=Notifier),
        ActorSpec(name="alerts", factory=lambda: AlertsActor(
            settings, store_path="/root/store", notifier_path="/root/notifier", directory=Published(directory),
            command_stats=CommandStats(TenantLabels(10)), state=state)),
    ])
    async with open_actor_system(tree) as system:
        alerts = system.lookup("/root/alerts")
        await alerts.ask(_Evaluate())  # the record is not committed
        assert await alerts.ask(ActiveAlerts("acme")) == []  # so not told, and not listed
        await alerts.ask(_Evaluate())
        assert [n.name for n in await alerts.ask(ActiveAlerts("acme"))] == ["AgentOffline"]
        assert [w.action for w in committed] == ["alert.firing"]  # type: ignore[attr-defined]
        assert next(c for c in system.snapshot().root.children if c.path == "/root/alerts").restarts == 0


async def test_a_delivery_whose_record_failed_is_refused_and_the_actor_carries_on():
    """Refused (503 at the webhook: Alertmanager resends), where it crashed the actor (500)."""
    settings = Settings.defaults()
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
