"""The server's own alert rules, the alert book's transitions, command
outcome counting and bounded labels: pure, with plain values."""

from __future__ import annotations

import attrs

from trioscope.domain.alerts import (
    AGENT_OFFLINE, FIRING, HIGH_COMMAND_FAILURE_RATE, RESOLVED, AgentSighting, AlertBook, AlertLedger, FailureWindow,
    WebhookPayload, offline_agents, webhook_notices,
)
from trioscope.domain.command_stats import CommandStats, TenantOutcomes, failure_class, queue_load
from trioscope.domain.commands import Command, CommandEvent, CommandStatus, Priority, new_command
from trioscope.domain.metric_labels import OTHER, TenantLabels, api_error_type, command_type_label
from trioscope.wire import decode


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
