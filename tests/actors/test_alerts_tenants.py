"""The alerts actor with two tenants whose Alertmanager alerts share a
fingerprint (the webhook takes them as sent): each tenant's is its own,
delivered, listed, resolved and read back at a restart on its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs

from trioscope.actors.alerts import ActiveAlerts, AlertsActor, Deliver
from trioscope.actors.notifier import Publish
from trioscope.actors.store import StoreActor
from trioscope.config import Settings
from trioscope.domain.alerts import AlertNotice
from trioscope.domain.command_stats import CommandStats
from trioscope.domain.deployments import AgentDirectory
from trioscope.domain.metric_labels import TenantLabels
from trioscope.runtime import Actor, ActorRef, ActorSpec, Published, SupervisorSpec, open_actor_system
from trioscope.store import StoreReader

SHARED = "deadbeefdeadbeef"
T0 = 1_800_000_000.0


def sent(tenant: str, status: str) -> AlertNotice:
    return AlertNotice(name=f"Down-{tenant}", status=status, tenant=tenant, severity="critical", summary="down",
                       labels={"alertname": f"Down-{tenant}", "tenant": tenant}, fingerprint=SHARED,
                       starts_at="2026-12-02T10:00:00Z", source="alertmanager")


class Told(Actor):
    """The notifier: keeps (tenant, alert, status) of each event published; answers any other message."""

    def __init__(self, told: list[tuple[str, str, str]]) -> None:
        self.told = told

    async def handle(self, message: object) -> object:
        if isinstance(message, Publish):
            self.told.append((message.tenant, message.event["alert"], message.event["status"]))
        return None


@attrs.define
class Server:
    alerts: ActorRef
    notifier: ActorRef
    told: list[tuple[str, str, str]]

    async def listed(self, tenant: str) -> list[str]:
        return [n.name for n in await self.alerts.ask(ActiveAlerts(tenant))]

    async def told_so_far(self) -> list[tuple[str, str, str]]:
        await self.notifier.ask("flush")
        return self.told


@asynccontextmanager
async def server_on_disk(path: Path) -> AsyncIterator[Server]:
    reader = StoreReader(path)
    told: list[tuple[str, str, str]] = []
    tree = SupervisorSpec(name="root", children=[
        ActorSpec(name="store", factory=lambda: StoreActor(path, reader)),
        ActorSpec(name="notifier", factory=lambda: Told(told)),
        ActorSpec(name="alerts", factory=lambda: AlertsActor(
            Settings.defaults(), store_path="/root/store", notifier_path="/root/notifier",
            directory=Published(AgentDirectory()), command_stats=CommandStats(TenantLabels(10)),
            clock=lambda: T0, reader=reader)),
    ])
    try:
        async with open_actor_system(tree) as system:
            yield Server(system.lookup("/root/alerts"), system.lookup("/root/notifier"), told)
    finally:
        reader.close()


async def test_two_tenants_alerts_of_one_fingerprint_are_each_their_own(tmp_path: Path) -> None:
    """TB's alert with TA's fingerprint was dropped (the answer said
    delivered: 1), and TB's end of it removed TA's, TA told nothing."""
    async with server_on_disk(tmp_path / "db.sqlite3") as server:
        assert await server.alerts.ask(Deliver((sent("ta", "firing"),), actor="alertmanager")) == 1
        assert await server.alerts.ask(Deliver((sent("tb", "firing"),), actor="alertmanager")) == 1
        assert await server.listed("ta") == ["Down-ta"]
        assert await server.listed("tb") == ["Down-tb"]
        assert await server.alerts.ask(Deliver((sent("tb", "resolved"),), actor="alertmanager")) == 1
        assert await server.listed("tb") == []
        assert await server.listed("ta") == ["Down-ta"]
        assert await server.told_so_far() == [("ta", "Down-ta", "firing"), ("tb", "Down-tb", "firing"),
                                              ("tb", "Down-tb", "resolved")]
        assert await server.alerts.ask(Deliver((sent("tb", "firing"),), actor="alertmanager")) == 1
    async with server_on_disk(tmp_path / "db.sqlite3") as server:  # read back from the audit log: both
        assert await server.listed("ta") == ["Down-ta"]
        assert await server.listed("tb") == ["Down-tb"]
        await server.alerts.ask(Deliver((sent("ta", "firing"), sent("tb", "firing")), actor="alertmanager"))
        assert await server.told_so_far() == []  # repeats: not news
