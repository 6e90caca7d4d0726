"""Counts of finished commands and the load of the deployment queues: what
``/metrics`` exports as ``trydirect_commands_*`` and what the server's own
command-failure alert reads. Pure: the queue actors record into it where
commands finish (their clock passed in), readers take numbers out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

import attrs

from .commands import Command, CommandEvent, CommandStatus
from .histogram import Histogram
from .metric_labels import TenantLabels, command_type_label

DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Upper bounds (seconds) of ``trydirect_commands_duration_seconds``: a
container control takes a second, a backup may take an hour."""


def failure_class(command: Command) -> str | None:
    """The ``error_type`` of a finished command that did not succeed, or None
    (completed, cancelled): a class, never the error's text.

    ``timeout``: with the agent past its timeout; ``expired``: not delivered
    before the delivery deadline (or its one agent was retired);
    ``not_acknowledged``: the agent socket never acknowledged it;
    ``agent_error``: the agent reported it failed."""
    if command.status is CommandStatus.EXPIRED:
        return "expired"
    if command.status is not CommandStatus.FAILED:
        return None
    last = command.history[-1]
    if last.event is CommandEvent.TIME_OUT:
        return "timeout"
    if "agent_id" in (last.detail or {}):
        return "agent_error"
    return "not_acknowledged"


@attrs.frozen
class TenantOutcomes:
    """Finished and failed commands of one tenant since the server started."""

    finished: int = 0
    failed: int = 0


@attrs.frozen
class QueueLoad:
    """One deployment queue, as its actor last recorded it."""

    queued: int
    """Commands waiting for delivery (status ``queued``)."""
    oldest_due: float | None
    """When the longest-waiting of them became deliverable (unix seconds; None: none)."""


class CommandStats:
    """Finished commands by tenant label, type and status; failures by error
    class; durations by type; and each running queue's load.

    One object per server, written by its queue actors and read by ``/metrics``
    and the alerts actor, all on one Trio thread (no lock)."""

    def __init__(self, tenant_labels: TenantLabels) -> None:
        self.tenant_labels = tenant_labels
        self.finished: Counter[tuple[str, str, str]] = Counter()
        """``(tenant label, type label, status)`` -> finished commands."""
        self.failed: Counter[tuple[str, str, str]] = Counter()
        """``(tenant label, type label, error class)`` -> commands that did not succeed."""
        self.durations: dict[str, Histogram] = {}
        """Type label -> seconds from delivery to the final status."""
        self.tenants: dict[str, TenantOutcomes] = {}
        """Exact tenant -> its outcomes (the failure alert names the tenant,
        never ``other``), while it finishes commands (``forget_idle``)."""
        self._last_finished: dict[str, float] = {}
        """Exact tenant -> when its latest command finished."""
        self.queues: dict[str, QueueLoad] = {}

    def record_finished(self, command: Command, now: float) -> None:
        """``command`` reached a final status at ``now`` (call once per command)."""
        tenant = self.tenant_labels.label(command.tenant)
        kind = command_type_label(command.type)
        self.finished[tenant, kind, command.status.value] += 1
        failure = failure_class(command)
        if failure is not None:
            self.failed[tenant, kind, failure] += 1
        if command.sent_at is not None:
            histogram = self.durations.get(kind)
            if histogram is None:
                histogram = self.durations[kind] = Histogram(DURATION_BUCKETS)
            histogram.observe(max(0.0, now - command.sent_at))
        seen = self.tenants.get(command.tenant, TenantOutcomes())
        self.tenants[command.tenant] = TenantOutcomes(seen.finished + 1, seen.failed + (failure is not None))
        self._last_finished[command.tenant] = now

    def forget_idle(self, now: float, idle: float) -> None:
        """Drop the outcomes of tenants none of whose commands finished in the
        ``idle`` seconds before ``now``: one comes back counting from zero.
        Every tenant that ever finished a command was kept (~2.6 KB each with
        the failure alert's window, and looked at at each evaluation)."""
        horizon = now - idle
        for tenant in [t for t, at in self._last_finished.items() if at < horizon]:
            del self._last_finished[tenant]
            self.tenants.pop(tenant, None)

    def record_queue(self, deployment_hash: str, load: QueueLoad) -> None:
        self.queues[deployment_hash] = load

    def forget_queue(self, deployment_hash: str) -> None:
        self.queues.pop(deployment_hash, None)

    def queue_size(self) -> int:
        """Commands waiting for delivery in every running queue."""
        return sum(load.queued for load in self.queues.values())

    def processing_lag(self, now: float) -> float:
        """Seconds the longest-waiting deliverable command has waited (0: none waits)."""
        due = [load.oldest_due for load in self.queues.values() if load.oldest_due is not None]
        return max(0.0, now - min(due)) if due else 0.0

    def outcomes(self) -> Iterator[tuple[str, TenantOutcomes]]:
        return iter(self.tenants.items())


def queue_load(commands: Iterable[Command], now: float) -> QueueLoad:
    """The load of one queue's open commands at ``now``."""
    queued, oldest = 0, None
    for command in commands:
        if command.status is CommandStatus.QUEUED:
            queued += 1
            if command.scheduled_for <= now and (oldest is None or command.scheduled_for < oldest):
                oldest = command.scheduled_for
    return QueueLoad(queued, oldest)
