"""The server's own alert rules, the alert book's transitions, command
outcome counting and bounded labels: pure, with plain values."""

from __future__ import annotations

import attrs
import pytest

from trioscope.domain.alerts import (
    AGENT_OFFLINE, FIRING, HIGH_COMMAND_FAILURE_RATE, KEPT_DESCRIPTION, KEPT_LABEL_VALUE, KEPT_LABELS, KEPT_SUMMARY,
    RESOLVED, TRUNCATED_LABELS, AgentSighting, AlertBook, AlertLedger, AlertNotice, FailureWindow, WebhookPayload,
    audit_details, fingerprint, kept, last_heard, notice_from_audit, offline_agents, webhook_notices,
)
from trioscope.domain.command_stats import CommandStats, TenantOutcomes, failure_class, queue_load
from trioscope.domain.commands import Command, CommandEvent, CommandStatus, Priority, new_command
from trioscope.domain.metric_labels import OTHER, TenantLabels, api_error_type, command_type_label
from trioscope.wire import InvalidDocument, decode


def sighting(agent: str, last_seen: float, tenant: str = "acme") -> AgentSighting:
    return AgentSighting(agent_id=agent, deployment_hash="d-" + agent, tenant=tenant, last_seen=last_seen)


def test_agent_offline_fires_once_then_resolves_once() -> None:
    book = AlertBook()
    fleet = [sighting("a1", 0.0), sighting("a2", 95.0)]
    assert book.update(offline_agents(fleet, 50.0, 60.0), 50.0) == []
    fired = book.update(offline_agents(fleet, 100.0, 60.0), 100.0)
    assert [(n.name, n.status, n.labels["agent"], n.tenant) for n in fired] == [(AGENT_OFFLINE, FIRING, "a1", "acme")]
    for now in (101.0, 130.0, 150.0):  # still offline: nothing new, however often evaluated
        assert book.update(offline_agents(fleet, now, 60.0), now) == []
    fleet[0] = sighting("a1", 151.0)
    resolved = book.update(offline_agents(fleet, 152.0, 60.0), 152.0)
    assert [(n.status, n.fingerprint, n.ends_at) for n in resolved] == [
        (RESOLVED, fired[0].fingerprint, "1970-01-01T00:02:32Z")]
    assert book.active == {}


def test_an_update_of_one_rule_leaves_the_other_rules_alerts_alone() -> None:
    book = AlertBook()
    book.update(offline_agents([sighting("a1", 0.0)], 100.0, 60.0), 100.0, only=[AGENT_OFFLINE])
    assert book.update([], 101.0, only=[HIGH_COMMAND_FAILURE_RATE]) == []
    assert len(book.active) == 1


def test_failure_rate_counts_only_the_window_and_needs_enough_commands() -> None:
    window = FailureWindow(300.0)
    window.observe([("acme", TenantOutcomes(100, 0)), ("calm", TenantOutcomes(0, 0))], 0.0)
    window.observe([("acme", TenantOutcomes(110, 3)), ("calm", TenantOutcomes(5, 5))], 200.0)
    assert list(window.failing(200.0, ratio=0.1, min_commands=10)) == []  # acme: 3 of 110; calm: too few
    window.observe([("acme", TenantOutcomes(130, 13)), ("calm", TenantOutcomes(5, 5))], 400.0)
    failing = list(window.failing(400.0, ratio=0.1, min_commands=10))
    # The base is the newest sample at or before the window's start (t=0: 100 finished, 0 failed).
    assert [(n.name, n.tenant, n.description) for n in failing] == [
        (HIGH_COMMAND_FAILURE_RATE, "acme", "Command failure rate is 0.43 for the last 300 s (13 of 30)")]
    window.observe([("acme", TenantOutcomes(230, 13)), ("calm", TenantOutcomes(5, 5))], 800.0)
    assert list(window.failing(800.0, ratio=0.1, min_commands=10)) == []  # 0 of 100 in the last 300 s


def command(status: CommandStatus, event: CommandEvent, detail: dict[str, str] | None = None,
            **changes: object) -> Command:
    made = new_command(command_id="c1", deployment_hash="d1", tenant="acme", type="backup", parameters={},
                       priority=Priority.NORMAL, created_by="user:u", now=0.0, schedule_at=None, timeout_seconds=60,
                       requires_confirmation=False, sequence=1)
    history = (*made.history, attrs.evolve(made.history[-1], event=event, detail=detail))
    return attrs.evolve(made, status=status, history=history, **changes)


def test_failures_are_classed_never_quoted() -> None:
    assert failure_class(command(CommandStatus.FAILED, CommandEvent.TIME_OUT)) == "timeout"
    assert failure_class(command(CommandStatus.FAILED, CommandEvent.FAIL, {"agent_id": "a"})) == "agent_error"
    assert failure_class(command(CommandStatus.FAILED, CommandEvent.FAIL, {"error": "x"})) == "not_acknowledged"
    assert failure_class(command(CommandStatus.EXPIRED, CommandEvent.EXPIRE)) == "expired"
    assert failure_class(command(CommandStatus.COMPLETED, CommandEvent.COMPLETE)) is None


def test_command_stats_count_by_bounded_labels() -> None:
    stats = CommandStats(TenantLabels(1))
    stats.record_finished(command(CommandStatus.FAILED, CommandEvent.TIME_OUT, sent_at=10.0), 40.0)
    stats.record_finished(attrs.evolve(command(CommandStatus.COMPLETED, CommandEvent.COMPLETE), tenant="beta",
                                       type="x" * 90), 5.0)
    assert stats.finished == {("acme", "backup", "failed"): 1, (OTHER, OTHER, "completed"): 1}
    assert stats.failed == {("acme", "backup", "timeout"): 1}
    assert stats.durations["backup"].count == 1 and stats.durations["backup"].total == 30.0
    assert stats.tenants == {"acme": TenantOutcomes(1, 1), "beta": TenantOutcomes(1, 0)}  # exact, for alerts
    queued = attrs.evolve(command(CommandStatus.QUEUED, CommandEvent.CONFIRM), scheduled_for=100.0)
    stats.record_queue("d1", queue_load([queued], 130.0))
    assert (stats.queue_size(), stats.processing_lag(160.0)) == (1, 60.0)
    stats.forget_queue("d1")
    assert (stats.queue_size(), stats.processing_lag(160.0)) == (0, 0.0)


def test_labels_are_bounded() -> None:
    assert command_type_label("docker.restart") == "docker.restart"
    assert command_type_label("my.own.thing") == OTHER
    assert [api_error_type(s) for s in (200, 400, 401, 404, 429, 500, 418)] == [
        None, "validation", "unauthenticated", "not_found", "rate_limited", "internal", "client"]
    labels = TenantLabels(2)
    assert [labels.label(t) for t in ("a", "b", "c", "a")] == ["a", "b", OTHER, "a"]


def test_webhook_alerts_without_a_tenant_are_left_out() -> None:
    payload = decode({"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "X", "tenant": "acme"}, "endsAt": "0001-01-01T00:00:00Z"},
        {"status": "resolved", "labels": {"alertname": "Y"}},
        {"status": "firing", "labels": {"alertname": "Z", "tenant": OTHER}}]}, WebhookPayload)
    notices, skipped = webhook_notices(payload)
    assert [(n.name, n.tenant, n.ends_at, n.source) for n in notices] == [("X", "acme", None, "alertmanager")]
    assert skipped == 2


def test_the_ledger_keeps_delivered_alerts_until_resolved_bounded_and_fresh() -> None:
    payload = decode({"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": n, "tenant": t}, "fingerprint": f"fp-{n}"}
        for n, t in (("A", "acme"), ("B", "acme"), ("C", "beta"))]}, WebhookPayload)
    a, b, c = webhook_notices(payload)[0]
    ledger = AlertLedger(limit=2, ttl=100.0)
    for notice in (a, b, c):
        ledger.record(notice, 0.0)
    assert [n.name for n in ledger.active("acme", 1.0)] == ["B"]  # A went first: at most 2
    ledger.record(attrs.evolve(b, status=RESOLVED), 2.0)
    assert ledger.active("acme", 3.0) == []
    assert [n.name for n in ledger.active("beta", 50.0)] == ["C"]
    assert ledger.active("beta", 101.0) == []  # no news for longer than the ttl


def _webhook(*alerts: dict[str, object]) -> list[AlertNotice]:
    payload = decode({"version": "4", "status": "firing", "alerts": list(alerts)}, WebhookPayload)
    return webhook_notices(payload)[0]


def _alert(name: str, tenant: str = "acme", status: str = "firing", **labels: str) -> dict[str, object]:
    return {"status": status, "labels": {"alertname": name, "tenant": tenant, **labels}, "fingerprint": f"fp-{name}"}


def test_an_alert_firing_already_is_not_news_nor_the_end_of_one_not_firing() -> None:
    """Alertmanager sends whole groups again (group_interval, repeat_interval):
    each resend used to be told, 3 firing and 2 resolved made 5 events."""
    (firing,), (resolved,) = _webhook(_alert("A")), _webhook(_alert("A", status="resolved"))
    ledger = AlertLedger(limit=10, ttl=100.0)
    told = []
    for notice, at in ((firing, 1.0), (firing, 2.0), (firing, 3.0), (resolved, 4.0), (resolved, 5.0)):
        news = ledger.news([notice], at)
        told += [n.status for n in news]
        ledger.record(notice, at)
    assert told == [FIRING, RESOLVED]
    assert ledger.news([resolved], 6.0) == []  # never fired here: nothing to end
    assert ledger.news([firing, firing, resolved, resolved], 6.0) == [firing, resolved]  # within one call too
    ledger.record(firing, 10.0)
    assert ledger.news([firing], 200.0) == [firing]  # forgotten for lack of news: told again


def test_one_tenants_alerts_never_push_out_anothers() -> None:
    ledger = AlertLedger(limit=6, tenant_limit=3, ttl=100.0)
    (beta,) = _webhook(_alert("B0", "beta"))
    ledger.record(beta, 0.0)
    for notice in _webhook(*(_alert(f"A{i}") for i in range(10))):
        ledger.record(notice, 1.0)
    assert [n.name for n in ledger.active("acme", 2.0)] == ["A7", "A8", "A9"]  # its own oldest went
    assert [n.name for n in ledger.active("beta", 2.0)] == ["B0"]
    for notice in _webhook(*(_alert(f"C{i}", f"t{i}") for i in range(3))):
        ledger.record(notice, 1.0)
    assert len(ledger) == 6 and [n.name for n in ledger.active("beta", 2.0)] == ["B0"]  # the largest gave way
    assert len(ledger.active("acme", 2.0)) == 2


def test_long_fields_are_accepted_and_kept_cut_saying_so() -> None:
    """A single long annotation (over 4,096 characters) or URL (over 1,024)
    refused the whole group; 64 labels of 4 KiB were kept whole."""
    labels = {f"l{k:02d}": "v" * 4000 for k in range(60)}
    (notice,) = _webhook({"status": "firing", "labels": {"alertname": "Big", "tenant": "acme", **labels},
                          "annotations": {"summary": "s" * 10_000, "description": "d" * 100_000},
                          "generatorURL": "http://prometheus:9090/graph?g0.expr=" + "x" * 5000})
    assert notice.fingerprint == fingerprint("Big", {"alertname": "Big", "tenant": "acme", **labels})
    assert len(notice.summary) <= KEPT_SUMMARY and notice.summary.endswith("[truncated: 10000 characters]")
    assert len(notice.description) <= KEPT_DESCRIPTION and "truncated: 100000" in notice.description
    assert sum(len(k) + len(v) for k, v in notice.labels.items()) <= KEPT_LABELS + 64
    assert (notice.labels["alertname"], notice.labels["tenant"]) == ("Big", "acme")
    assert int(notice.labels[TRUNCATED_LABELS]) + len(notice.labels) - 3 == 60
    assert all(len(v) <= KEPT_LABEL_VALUE for v in notice.labels.values())
    assert kept(notice) is notice  # cut once: kept as it is
    with pytest.raises(InvalidDocument, match=r"\$\.alerts\[0\]\.status"):  # malformed stays refused
        _webhook({**_alert("A"), "status": "on fire"})


def test_an_alert_is_rebuilt_from_its_audit_record() -> None:
    (notice,) = _webhook({**_alert("A", instance="h1"), "annotations": {"summary": "S", "description": "D"},
                          "startsAt": "2026-12-02T10:00:00Z"})
    details = audit_details(notice)
    assert notice_from_audit("acme", notice.fingerprint, "alert.firing", details) == notice
    assert notice_from_audit("acme", notice.fingerprint, "alert.firing", details).event() == notice.event()  # type: ignore[union-attr]
    assert notice_from_audit("acme", notice.fingerprint, "alert.resolved", details).status == RESOLVED  # type: ignore[union-attr]
    assert notice_from_audit("acme", notice.fingerprint, "command.create", details) is None
    assert notice_from_audit("acme", notice.fingerprint, "alert.firing", {**details, "labels": [1]}) is None
    offline = next(offline_agents([sighting("a1", 100.0)], 500.0, 300.0))
    assert last_heard(offline, 300.0) == ("a1", 100.0)
    assert last_heard(notice, 300.0) is None


def test_a_tenant_idle_for_a_window_is_counted_no_more_and_comes_back_from_zero() -> None:
    """Every tenant that ever finished a command was kept, its window sampled
    at every evaluation (~2.6 KB a tenant, for good)."""
    stats, window = CommandStats(TenantLabels(10)), FailureWindow(300.0)
    for at in (0.0, 10.0):
        stats.record_finished(command(CommandStatus.FAILED, CommandEvent.TIME_OUT), at)
    stats.record_finished(attrs.evolve(command(CommandStatus.COMPLETED, CommandEvent.COMPLETE), tenant="busy"), 10.0)

    def evaluate(now: float) -> list[str]:
        stats.forget_idle(now, window.window)
        window.observe(stats.outcomes(), now)
        return [n.tenant for n in window.failing(now, ratio=0.1, min_commands=2)]

    assert evaluate(20.0) == ["acme"]
    stats.record_finished(attrs.evolve(command(CommandStatus.COMPLETED, CommandEvent.COMPLETE), tenant="busy"), 300.0)
    assert evaluate(311.0) == []  # acme's last finished 301 s ago: nothing of it in the window
    assert set(stats.tenants) == {"busy"} and [t for t, _ in stats.outcomes()] == ["busy"]
    assert len(window._samples) == 1  # acme's samples went with it
    # Back, with one failure: counted from zero (its earlier two are not in the window).
    stats.record_finished(command(CommandStatus.FAILED, CommandEvent.TIME_OUT), 400.0)
    assert stats.tenants["acme"] == TenantOutcomes(1, 1)
    assert evaluate(401.0) == []  # one command: fewer than min_commands
    stats.record_finished(command(CommandStatus.FAILED, CommandEvent.TIME_OUT), 402.0)
    assert evaluate(403.0) == ["acme"]
