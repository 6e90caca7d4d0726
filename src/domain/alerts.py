"""Alerts users see as ``system_alert`` events: the server's own rules
(AgentOffline, HighCommandFailureRate, the shipped Prometheus rules' twins for
servers without Prometheus), what Alertmanager's webhook sends, and the one
shape both become. Pure: time is passed in.

A rule says which alerts fire now; ``AlertBook`` turns that into changes, one
per transition (firing, then resolved), however often the rules are evaluated.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

import attrs

from trioscope.wire import (
    RFC3339, Name, Text, TextRule, bounded_list, bounded_map, constrained, parse_timestamp,
)

from .agents import rfc3339
from .command_stats import TenantOutcomes
from .metric_labels import OTHER

AlertStatus = Literal["firing", "resolved"]
FIRING: AlertStatus = "firing"
RESOLVED: AlertStatus = "resolved"

AGENT_OFFLINE = "AgentOffline"
HIGH_COMMAND_FAILURE_RATE = "HighCommandFailureRate"


def fingerprint(name: str, labels: Mapping[str, str]) -> str:
    """A stable id of an alert (name and labels), 16 hex digits as Alertmanager's are."""
    text = "\0".join([name, *(f"{k}\0{v}" for k, v in sorted(labels.items()))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@attrs.frozen(kw_only=True)
class AlertNotice:
    """One alert changed state: what a tenant's users are told, and what is audited."""

    name: str
    status: AlertStatus
    tenant: str
    severity: str
    summary: str
    description: str = ""
    labels: Mapping[str, str] = attrs.field(factory=dict, eq=False)
    fingerprint: str
    starts_at: str | None
    """RFC 3339, as the source gave it."""
    ends_at: str | None = None
    source: str
    """``trioscope`` (the server's own rules) or ``alertmanager`` (the webhook)."""

    def event(self) -> dict[str, Any]:
        """The ``system_alert`` event (the seed's ``{type, severity, message}``, and what identifies it)."""
        return {"type": "system_alert", "alert": self.name, "status": self.status, "severity": self.severity,
                "message": self.summary, "description": self.description, "labels": dict(self.labels),
                "fingerprint": self.fingerprint, "starts_at": self.starts_at, "ends_at": self.ends_at,
                "source": self.source}


def _notice(name: str, tenant: str, severity: str, summary: str, description: str, labels: dict[str, str],
            starts_at: float) -> AlertNotice:
    labels = {"alertname": name, "severity": severity, "tenant": tenant, **labels}
    return AlertNotice(name=name, status=FIRING, tenant=tenant, severity=severity, summary=summary,
                       description=description, labels=labels, fingerprint=fingerprint(name, labels),
                       starts_at=rfc3339(starts_at), source="trioscope")


class AlertBook:
    """The alerts firing now, by fingerprint: what the rules say fires is
    compared with what fired before, so each alert changes once each way."""

    def __init__(self) -> None:
        self.active: dict[str, AlertNotice] = {}

    def update(self, firing: Iterable[AlertNotice], now: float, *, only: Iterable[str] | None = None
               ) -> list[AlertNotice]:
        """The changes when exactly ``firing`` fire at ``now``: new ones (firing)
        and those no longer firing (resolved). With ``only``, the names of the
        rules that were evaluated, alerts of other rules are left as they are."""
        names = None if only is None else set(only)
        now_firing = {n.fingerprint: n for n in firing}
        changes = [n for fp, n in now_firing.items() if fp not in self.active]
        for fp in [fp for fp, n in self.active.items()
                   if fp not in now_firing and (names is None or n.name in names)]:
            changes.append(attrs.evolve(self.active.pop(fp), status=RESOLVED, ends_at=rfc3339(now)))
        for notice in changes:
            if notice.status == FIRING:
                self.active[notice.fingerprint] = notice
        return changes


class AlertLedger:
    """Alerts delivered from elsewhere (Alertmanager) that fire now, by
    fingerprint: a firing notice adds or refreshes one, a resolved one removes
    it. Bounded: at most ``limit`` (the oldest news go first), and one not
    heard of again within ``ttl`` seconds is forgotten (Alertmanager repeats
    firing alerts every ``repeat_interval``, 4 h by default)."""

    def __init__(self, *, limit: int, ttl: float) -> None:
        self.limit = limit
        self.ttl = ttl
        self._alerts: dict[str, tuple[AlertNotice, float]] = {}

    def record(self, notice: AlertNotice, now: float) -> None:
        self._alerts.pop(notice.fingerprint, None)
        if notice.status == FIRING:
            self._alerts[notice.fingerprint] = (notice, now)
            while len(self._alerts) > self.limit:
                del self._alerts[next(iter(self._alerts))]

    def active(self, tenant: str, now: float) -> list[AlertNotice]:
        """The tenant's alerts firing now, oldest news first."""
        for fp in [fp for fp, (_, at) in self._alerts.items() if now - at > self.ttl]:
            del self._alerts[fp]
        return [notice for notice, _ in self._alerts.values() if notice.tenant == tenant]


@attrs.frozen(kw_only=True)
class AgentSighting:
    """An active enrolled agent and when it was last heard from."""

    agent_id: str
    deployment_hash: str
    tenant: str
    last_seen: float


def offline_agents(sightings: Iterable[AgentSighting], now: float, offline_after: float) -> Iterator[AlertNotice]:
    """AgentOffline for each agent silent for more than ``offline_after`` seconds."""
    for s in sightings:
        if now - s.last_seen > offline_after:
            yield _notice(
                AGENT_OFFLINE, s.tenant, "critical", f"Agent {s.agent_id} is offline",
                f"no request from agent {s.agent_id} (deployment {s.deployment_hash}) since {rfc3339(s.last_seen)}",
                {"agent": s.agent_id, "deployment_hash": s.deployment_hash}, s.last_seen + offline_after)


class FailureWindow:
    """Each tenant's finished and failed command counts over the last
    ``window`` seconds, from samples of the running totals (as Prometheus's
    ``rate()`` over counters): the oldest sample at or before the window's
    start is the base."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._samples: dict[str, deque[tuple[float, TenantOutcomes]]] = {}

    def observe(self, outcomes: Iterable[tuple[str, TenantOutcomes]], now: float) -> None:
        for tenant, totals in outcomes:
            samples = self._samples.setdefault(tenant, deque([(now - self.window, TenantOutcomes())]))
            samples.append((now, totals))
            while len(samples) > 2 and samples[1][0] <= now - self.window:
                samples.popleft()

    def failing(self, now: float, *, ratio: float, min_commands: int) -> Iterator[AlertNotice]:
        """HighCommandFailureRate for each tenant whose commands finished in the
        window (at least ``min_commands``) failed more than ``ratio`` of the time."""
        for tenant, samples in self._samples.items():
            if tenant == OTHER:
                continue
            (_, base), (_, last) = samples[0], samples[-1]
            finished, failed = last.finished - base.finished, last.failed - base.failed
            if finished >= min_commands and failed > ratio * finished:
                share = failed / finished
                yield _notice(
                    HIGH_COMMAND_FAILURE_RATE, tenant, "warning", "High command failure rate",
                    f"Command failure rate is {share:.2f} for the last {self.window:g} s ({failed} of {finished})",
                    {}, now)


# Alertmanager's webhook payload (version 4), as it sends it: field names are its
# JSON keys, camelCase included, so that the strict decoder names them as sent.
MAX_WEBHOOK_ALERTS = 1000
"""Alerts in one webhook call (Alertmanager's ``max_alerts`` should be at most this)."""

Labels: Any = bounded_map("Labels", 64, 256, 4096)
UNSET_TIME = "0001-01-01T00:00:00Z"
"""What Alertmanager sends as ``endsAt`` when it does not know (Go's zero time)."""


def _a_moment(value: str) -> None:
    """Refuses a timestamp of RFC 3339's shape that names no moment (month 13,
    hour 25, before 1970): it would reach users as sent. Go's zero time aside."""
    if value != UNSET_TIME:
        parse_timestamp(value)


Timestamp: Any = constrained("Timestamp", str, TextRule(64, RFC3339, "an RFC 3339 timestamp like 2025-10-13T00:00:00Z",
                                                        valid=_a_moment))


@attrs.frozen(kw_only=True)
class WebhookAlert:
    status: AlertStatus
    labels: Labels
    annotations: Labels = attrs.field(factory=dict)
    startsAt: Timestamp | None = None  # Alertmanager's key
    endsAt: Timestamp | None = None  # Alertmanager's key
    fingerprint: Name | None = None
    generatorURL: Text | None = None  # Alertmanager's key


WebhookAlerts: Any = bounded_list("WebhookAlerts", WebhookAlert, MAX_WEBHOOK_ALERTS)


@attrs.frozen(kw_only=True)
class WebhookPayload:
    version: Literal["4"]
    status: AlertStatus
    alerts: WebhookAlerts
    receiver: Text | None = None


def webhook_notices(payload: WebhookPayload) -> tuple[list[AlertNotice], int]:
    """The notices of a webhook call, and how many alerts named no tenant (left out)."""
    notices, skipped = [], 0
    for alert in payload.alerts:
        tenant = alert.labels.get("tenant")
        if not tenant or tenant == OTHER:
            skipped += 1
            continue
        name = alert.labels.get("alertname", "alert")
        notices.append(AlertNotice(
            name=name, status=alert.status, tenant=tenant, severity=alert.labels.get("severity", "warning"),
            summary=alert.annotations.get("summary", name), description=alert.annotations.get("description", ""),
            labels=dict(alert.labels), fingerprint=alert.fingerprint or fingerprint(name, alert.labels),
            starts_at=alert.startsAt, ends_at=None if alert.endsAt == UNSET_TIME else alert.endsAt,
            source="alertmanager"))
    return notices, skipped
