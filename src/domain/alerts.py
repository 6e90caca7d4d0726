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
    rfc3339_seconds,
)

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
                       starts_at=rfc3339_seconds(starts_at), source="trioscope")


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
            changes.append(attrs.evolve(self.active.pop(fp), status=RESOLVED, ends_at=rfc3339_seconds(now)))
        for notice in changes:
            if notice.status == FIRING:
                self.active[notice.fingerprint] = notice
        return changes


KEPT_LABEL_VALUE = 256
"""Characters of a label value kept (and told) of an alert from elsewhere."""
KEPT_LABELS = 2048
"""Characters of label names and values kept of one alert: the rest are left out."""
KEPT_SUMMARY = 512
KEPT_DESCRIPTION = 2048
TRUNCATED_LABELS = "trioscope_labels_left_out"
"""The label that says how many labels an alert had beyond ``KEPT_LABELS``."""
_FIRST_LABELS = ("alertname", "severity", "tenant")


def cut(text: str, limit: int) -> str:
    """``text`` if at most ``limit`` characters, else its start and a note
    saying how long it was, ``limit`` characters in all (so cutting again
    changes nothing)."""
    if len(text) <= limit:
        return text
    note = f"... [truncated: {len(text)} characters]"
    return text[:max(0, limit - len(note))] + note


def kept(notice: AlertNotice) -> AlertNotice:
    """``notice`` as kept and told: label values, summary and description cut
    (``cut``), and labels past ``KEPT_LABELS`` characters left out, the
    number left out in ``TRUNCATED_LABELS``. An alert may carry 64 labels of
    4 KiB: kept whole, 10,000 of them took gigabytes, and one tenant's
    listing tens of megabytes. Its fingerprint is the whole alert's."""
    labels: dict[str, str] = {}
    used = left_out = 0
    order = [k for k in _FIRST_LABELS if k in notice.labels] + [k for k in notice.labels if k not in _FIRST_LABELS]
    for key in order:
        if key == TRUNCATED_LABELS:
            continue
        value = cut(notice.labels[key], KEPT_LABEL_VALUE)
        if used + len(key) + len(value) > KEPT_LABELS:
            left_out += 1
            continue
        used += len(key) + len(value)
        labels[key] = value
    earlier = notice.labels.get(TRUNCATED_LABELS, "")  # cut before: kept as it is
    left_out += int(earlier) if earlier.isascii() and earlier.isdigit() and len(earlier) < 10 else 0
    if left_out:
        labels[TRUNCATED_LABELS] = str(left_out)
    if labels == notice.labels and len(notice.summary) <= KEPT_SUMMARY \
            and len(notice.description) <= KEPT_DESCRIPTION \
            and max(len(notice.name), len(notice.severity)) <= KEPT_LABEL_VALUE:
        return notice
    return attrs.evolve(notice, labels=labels, name=cut(notice.name, KEPT_LABEL_VALUE),
                        severity=cut(notice.severity, KEPT_LABEL_VALUE),
                        summary=cut(notice.summary, KEPT_SUMMARY),
                        description=cut(notice.description, KEPT_DESCRIPTION))


ALERT_ACTIONS = ("alert.firing", "alert.resolved")
"""The audit actions of alert changes, ``alert.<status>``."""


def audit_details(notice: AlertNotice) -> dict[str, object]:
    """What an alert change's audit record holds beside its tenant
    (``tenant``), fingerprint (``resource_id``) and status (``action``): the
    rest of the notice, so that the alerts firing can be rebuilt from the
    audit log (``notice_from_audit``) at start, and by other replicas."""
    return {"alert": notice.name, "severity": notice.severity, "summary": notice.summary,
            "labels": dict(notice.labels), "source": notice.source, "description": notice.description,
            "starts_at": notice.starts_at, "ends_at": notice.ends_at}


def notice_from_audit(tenant: str | None, fingerprint: str | None, action: str,
                      details: Mapping[str, Any]) -> AlertNotice | None:
    """The notice an alert change's audit record tells (``audit_details``);
    None for another record, or one that is not whole. Records written before
    the description and times were kept have none."""
    status = action.removeprefix("alert.")
    if action not in ALERT_ACTIONS or not tenant or not fingerprint:
        return None
    text = {k: details.get(k) for k in ("alert", "severity", "summary", "source")}
    labels = details.get("labels")
    if not all(isinstance(v, str) for v in text.values()) or not isinstance(labels, dict) \
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        return None
    optional = {k: details.get(k) for k in ("description", "starts_at", "ends_at")}
    if not all(v is None or isinstance(v, str) for v in optional.values()):
        return None
    return kept(AlertNotice(
        name=str(text["alert"]), status=FIRING if status == FIRING else RESOLVED, tenant=tenant,
        severity=str(text["severity"]), summary=str(text["summary"]), description=optional["description"] or "",
        labels=labels, fingerprint=fingerprint, starts_at=optional["starts_at"], ends_at=optional["ends_at"],
        source=str(text["source"])))


class AlertLedger:
    """Alerts delivered from elsewhere (Alertmanager) that fire now, by tenant
    and fingerprint: a firing notice adds one, a resolved one removes it.

    An alert is its tenant's: the same fingerprint sent for two tenants (the
    webhook takes fingerprints as sent) is two alerts, each told, resolved
    and bounded on its own; one tenant's never stands for, nor resolves,
    another's (as the audit log keeps them: its newest record of each tenant
    and fingerprint is what they are rebuilt from).

    Alertmanager sends a group's alerts again on every change of the group
    and every ``repeat_interval``: ``news`` tells which notices change what
    fires (each alert is told once when it fires and once when it resolves),
    and ``record`` keeps them. Bounded by tenant, so that one tenant's alerts
    never push out another's: at most ``tenant_limit`` a tenant (its oldest
    go first) and ``limit`` in all (then the tenant with the most loses its
    oldest); each kept as ``kept`` bounds it; one not heard of again within
    ``ttl`` seconds is forgotten (Alertmanager repeats firing alerts every
    ``repeat_interval``, 4 h by default)."""

    def __init__(self, *, limit: int, ttl: float, tenant_limit: int | None = None) -> None:
        self.limit = limit
        self.tenant_limit = limit if tenant_limit is None else tenant_limit
        self.ttl = ttl
        self._tenants: dict[str, dict[str, tuple[AlertNotice, float]]] = {}
        """Tenant -> fingerprint -> (the notice told, when last heard of), in the order they fired."""
        self._count = 0
        """Alerts kept, over all tenants."""

    def __len__(self) -> int:
        return self._count

    def _firing(self, tenant: str, fp: str, now: float) -> bool:
        heard = self._tenants.get(tenant, {}).get(fp)
        return heard is not None and now - heard[1] <= self.ttl

    def news(self, notices: Iterable[AlertNotice], now: float) -> list[AlertNotice]:
        """Those of ``notices`` that change what fires, in order: a firing
        alert not firing yet, a resolved one that was firing (a notice
        repeated within ``notices`` counts once). Changes nothing: ``record``
        them once they are told."""
        firing: dict[tuple[str, str], bool] = {}
        changes = []
        for notice in notices:
            key = (notice.tenant, notice.fingerprint)
            was = firing[key] if key in firing else self._firing(*key, now)
            if (notice.status == FIRING) != was:
                changes.append(notice)
                firing[key] = notice.status == FIRING
        return changes

    def record(self, notice: AlertNotice, now: float) -> bool:
        """Keep what ``notice`` says (a repeat of a firing alert refreshes
        when it was last heard of); answers whether it was news."""
        tenant, fp = notice.tenant, notice.fingerprint
        was = self._firing(tenant, fp, now)
        if notice.status != FIRING:
            self._forget(tenant, fp)
            return was
        if was:
            alerts = self._tenants[tenant]
            told, _ = alerts[fp]
            alerts[fp] = (told, now)
            return False
        self._forget(tenant, fp)  # forgotten for lack of news: told again
        alerts = self._tenants.setdefault(tenant, {})
        alerts[fp] = (kept(notice), now)
        self._count += 1
        while len(alerts) > self.tenant_limit:
            self._forget(tenant, next(iter(alerts)))
        while self._count > self.limit:
            largest, its = max(self._tenants.items(), key=lambda item: len(item[1]))
            self._forget(largest, next(iter(its)))
        return True

    def _forget(self, tenant: str, fp: str) -> None:
        alerts = self._tenants.get(tenant)
        if alerts is None or alerts.pop(fp, None) is None:
            return
        self._count -= 1
        if not alerts:
            del self._tenants[tenant]

    def active(self, tenant: str, now: float) -> list[AlertNotice]:
        """The tenant's alerts firing now, in the order they fired."""
        alerts = self._tenants.get(tenant, {})
        for fp in [fp for fp, (_, at) in alerts.items() if now - at > self.ttl]:
            self._forget(tenant, fp)
        return [notice for notice, _ in self._tenants.get(tenant, {}).values()]


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
                f"no request from agent {s.agent_id} (deployment {s.deployment_hash}) since {rfc3339_seconds(s.last_seen)}",
                {"agent": s.agent_id, "deployment_hash": s.deployment_hash}, s.last_seen + offline_after)


def last_heard(notice: AlertNotice, offline_after: float) -> tuple[str, float] | None:
    """For an AgentOffline alert found firing at start (in the audit log): its
    agent and when it was last heard from (when it fired, less the threshold),
    so that it stays firing, not told again, while the agent is silent. None
    for another alert."""
    agent = notice.labels.get("agent")
    if notice.name != AGENT_OFFLINE or notice.source != "trioscope" or not agent or not notice.starts_at:
        return None
    try:
        fired = parse_timestamp(notice.starts_at).timestamp()
    except ValueError:
        return None
    return agent, fired - offline_after


class FailureWindow:
    """Each tenant's finished and failed command counts over the last
    ``window`` seconds, from samples of the running totals (as Prometheus's
    ``rate()`` over counters): the oldest sample at or before the window's
    start is the base."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._samples: dict[str, deque[tuple[float, TenantOutcomes]]] = {}

    def observe(self, outcomes: Iterable[tuple[str, TenantOutcomes]], now: float) -> None:
        """The running totals at ``now`` of every tenant counted: a tenant not
        among them is counted no more (``CommandStats.forget_idle``, after a
        window without a finished command: nothing of it is in the window),
        and one that comes back counts from zero, from then."""
        observed = set()
        for tenant, totals in outcomes:
            observed.add(tenant)
            samples = self._samples.setdefault(tenant, deque([(now - self.window, TenantOutcomes())]))
            samples.append((now, totals))
            while len(samples) > 2 and samples[1][0] <= now - self.window:
                samples.popleft()
        if len(observed) < len(self._samples):
            self._samples = {tenant: kept for tenant, kept in self._samples.items() if tenant in observed}

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

MAX_WEBHOOK_FIELD = 1024 * 1024
"""Characters of one label value, annotation or URL of a webhook alert: a
long one is accepted and cut where it is kept (``kept``), not refused, for a
refusal loses the whole group (Alertmanager gives up on it after its
retries). The webhook's body limit (1 MiB) bounds them all anyway."""

Labels: Any = bounded_map("Labels", 64, 256, MAX_WEBHOOK_FIELD)
UNSET_TIME = "0001-01-01T00:00:00Z"
"""What Alertmanager sends as ``endsAt`` when it does not know (Go's zero time)."""


def _a_moment(value: str) -> None:
    """Refuses a timestamp of RFC 3339's shape that names no moment (month 13,
    hour 25, before 1970): it would reach users as sent. Go's zero time aside."""
    if value != UNSET_TIME:
        parse_timestamp(value)


WebhookText: Any = constrained("WebhookText", str, TextRule(MAX_WEBHOOK_FIELD))
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
    generatorURL: WebhookText | None = None  # Alertmanager's key; not kept


WebhookAlerts: Any = bounded_list("WebhookAlerts", WebhookAlert, MAX_WEBHOOK_ALERTS)


@attrs.frozen(kw_only=True)
class WebhookPayload:
    version: Literal["4"]
    status: AlertStatus
    alerts: WebhookAlerts
    receiver: Text | None = None


MAX_TENANT = 128
"""Characters of a tenant id (``trioscope token create --tenant``): a longer
``tenant`` label names no tenant."""


def webhook_notices(payload: WebhookPayload) -> tuple[list[AlertNotice], int]:
    """The notices of a webhook call, each as kept (``kept``), and how many
    alerts named no tenant (left out)."""
    notices, skipped = [], 0
    for alert in payload.alerts:
        tenant = alert.labels.get("tenant")
        if not tenant or tenant == OTHER or len(tenant) > MAX_TENANT:
            skipped += 1
            continue
        name = alert.labels.get("alertname", "alert")
        notices.append(kept(AlertNotice(
            name=name, status=alert.status, tenant=tenant, severity=alert.labels.get("severity", "warning"),
            summary=alert.annotations.get("summary", name), description=alert.annotations.get("description", ""),
            labels=dict(alert.labels), fingerprint=alert.fingerprint or fingerprint(name, alert.labels),
            starts_at=alert.startsAt, ends_at=None if alert.endsAt == UNSET_TIME else alert.endsAt,
            source="alertmanager")))
    return notices, skipped
