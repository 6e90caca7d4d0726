"""The alerts actor under a fault, in-process with the real tree."""

from __future__ import annotations

from trioscope.actors.alerts import ActiveAlerts, Deliver
from trioscope.domain.alerts import AlertNotice
from trioscope.runtime import open_actor_system
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
