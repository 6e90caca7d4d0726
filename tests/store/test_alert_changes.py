"""Alert changes between replicas: an alert's audit record announces it on
the change channel, carried in the payload when it fits, read back when not,
and the newest record of each alert is what the alerts firing are rebuilt from."""

from __future__ import annotations

from trioscope.store import PAYLOAD_LIMIT, AuditEntry, Change, decode_change, encode_change
from trioscope.store._changes import changes_of

from .conftest import Store


def alert_record(fp: str, action: str = "alert.firing", at: float = 100.0, summary: str = "Disk full") -> AuditEntry:
    return AuditEntry(at=at, tenant="acme", actor="alertmanager", action=action, resource_type="alert",
                      resource_id=fp, details={"alert": "DiskFull", "severity": "critical", "summary": summary,
                                               "labels": {"alertname": "DiskFull"}, "source": "alertmanager"})


def test_an_alerts_audit_record_announces_it_with_the_record_when_it_fits() -> None:
    entry = alert_record("c0ffee")
    other = AuditEntry(at=1.0, tenant="acme", actor="user:u", action="command.create", resource_type="command")
    (change,) = changes_of([entry, other], "me", {})
    assert (change.kind, change.id, change.alert) == ("alert", "c0ffee", entry)
    heard = decode_change(encode_change(change))
    assert heard == change and heard.alert == entry
    big = alert_record("c0ffee", summary="x" * PAYLOAD_LIMIT)
    (change,) = changes_of([big], "me", {})
    payload = encode_change(change)
    assert len(payload) < PAYLOAD_LIMIT
    assert decode_change(payload).alert is None  # read back by the listener
    assert decode_change(encode_change(changes_of([entry], "me", {})[0], carry_alert=False)).alert is None


def test_a_command_change_carries_no_alert() -> None:
    change = Change(origin="me", kind="command", id="c1", deployment_hash="h", version=1)
    assert decode_change(encode_change(change)).alert is None


async def test_the_newest_record_of_each_alert_is_read_back(store: Store) -> None:
    await store.write(alert_record("a", at=1.0), alert_record("b", at=2.0))
    await store.write(alert_record("a", "alert.resolved", at=3.0))
    await store.write(AuditEntry(at=4.0, tenant="acme", actor="u", action="command.create", resource_type="command",
                                 resource_id="a"))
    reader = store.reader
    assert [(r.entry.resource_id, r.entry.action) for r in await reader.latest_alerts()] == [
        ("b", "alert.firing"), ("a", "alert.resolved")]
    assert [r.entry.resource_id for r in await reader.latest_alerts(since=2.5)] == ["a"]
    assert [r.entry.resource_id for r in await reader.latest_alerts(fingerprints=["b", "c"])] == ["b"]
    assert await reader.latest_alerts(fingerprints=[]) == []
    assert (await reader.latest_alerts(fingerprints=["b"]))[0].entry.details["summary"] == "Disk full"
