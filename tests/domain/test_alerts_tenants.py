"""Alertmanager's alerts are their tenant's: the same fingerprint sent for two
tenants is two alerts in the ledger (pure, plain values)."""

from __future__ import annotations

from trioscope.domain.alerts import FIRING, RESOLVED, AlertLedger, AlertNotice, WebhookPayload, webhook_notices
from trioscope.wire import decode

SHARED = "deadbeefdeadbeef"


def _sent(tenant: str, status: str, name: str = "DiskFull") -> AlertNotice:
    payload = decode({"version": "4", "status": status, "alerts": [
        {"status": status, "labels": {"alertname": name, "tenant": tenant}, "fingerprint": SHARED}]}, WebhookPayload)
    (notice,) = webhook_notices(payload)[0]
    return notice


def test_the_same_fingerprint_for_two_tenants_is_two_alerts() -> None:
    """TB's alert with TA's fingerprint was not news (dropped, though the
    webhook said delivered), and TB's end of it removed TA's, TA never told."""
    ledger = AlertLedger(limit=10, ttl=100.0)
    ta, tb = _sent("ta", "firing", "TaDown"), _sent("tb", "firing", "TbDown")
    for notice in (ta, tb):
        assert ledger.news([notice], 1.0) == [notice]
        assert ledger.record(notice, 1.0)
    assert [n.name for n in ledger.active("ta", 2.0)] == ["TaDown"]
    assert [n.name for n in ledger.active("tb", 2.0)] == ["TbDown"]
    assert len(ledger) == 2
    tb_end = _sent("tb", "resolved", "TbDown")
    assert [n.status for n in ledger.news([tb_end], 3.0)] == [RESOLVED]
    assert ledger.record(tb_end, 3.0)
    assert ledger.active("tb", 4.0) == []
    assert [n.name for n in ledger.active("ta", 4.0)] == ["TaDown"]  # TA's own, untouched
    assert ledger.news([_sent("tb", "resolved")], 5.0) == []  # TB's is over: nothing more to end
    assert ledger.news([ta], 5.0) == []  # TA's still firing: a repeat is not news
    # Within one call each tenant's counts on its own.
    both = [_sent("ta", "resolved"), _sent("tb", "firing")]
    assert [(n.tenant, n.status) for n in ledger.news(both, 6.0)] == [("ta", RESOLVED), ("tb", FIRING)]


def test_caps_count_and_drop_each_tenants_alert_of_the_same_fingerprint_on_its_own() -> None:
    def other(tenant: str) -> AlertNotice:
        payload = decode({"version": "4", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": "Other", "tenant": tenant}, "fingerprint": "0ther"}]},
            WebhookPayload)
        return webhook_notices(payload)[0][0]

    ledger = AlertLedger(limit=10, tenant_limit=1, ttl=100.0)
    ledger.record(_sent("ta", "firing"), 1.0)
    for notice in (other("tb"), _sent("tb", "firing")):  # TB's cap is 1: its older one goes
        ledger.record(notice, 2.0)
    assert [(n.tenant, n.name) for n in ledger.active("ta", 3.0)] == [("ta", "DiskFull")]
    assert [(n.tenant, n.name) for n in ledger.active("tb", 3.0)] == [("tb", "DiskFull")]
    assert len(ledger) == 2
    ledger = AlertLedger(limit=2, ttl=100.0)
    for notice in (_sent("ta", "firing"), _sent("tb", "firing"), other("tb")):  # 3 of 2: TB (the most) gives way
        ledger.record(notice, 1.0)
    assert [(n.tenant, n.name) for n in ledger.active("ta", 2.0)] == [("ta", "DiskFull")]
    assert [(n.tenant, n.name) for n in ledger.active("tb", 2.0)] == [("tb", "Other")]
    assert len(ledger) == 2
