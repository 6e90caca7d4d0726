"""The memory budget an agent's report must fit (``trioscope.wire.MemoryBudget``)
as the settings make it: one budget for the report check, what an agent is
told of its configuration and the warning at start when a host of a usual size
would not fit it."""

from __future__ import annotations

from datetime import UTC, datetime

from trioscope.actors.topology import PROCESS_HISTORY
from trioscope.config import Settings, format_duration_compact, format_size
from trioscope.wire import ContainerInfo, ContainerStats, DockerInfo, MemoryBudget, ProcessesInfo, ProcessInfo, Report


def memory_budget(settings: Settings) -> MemoryBudget:
    """What one agent's report may take (``agents.memory_budget``), with the
    metric history the server keeps for its nodes."""
    history = settings.storage.max_data_age
    return MemoryBudget(limit=settings.agents.memory_budget, history=history,
                        process_history=min(history, PROCESS_HISTORY))


TYPICAL_CONTAINERS, TYPICAL_PROCESSES = 10, 100


def _typical_host() -> Report:
    """A host of ``TYPICAL_CONTAINERS`` containers, each in a pod, and
    ``TYPICAL_PROCESSES`` processes (no connections: less than most such hosts take)."""
    when = datetime(2000, 1, 1, tzinfo=UTC)
    pods = [{"io.kubernetes.pod.name": f"pod-{i}", "io.kubernetes.pod.namespace": "default"}
            for i in range(TYPICAL_CONTAINERS)]
    return Report(
        agent_id="typical-host", timestamp=when, hostname="typical-host",
        docker_info=DockerInfo(containers=[
            ContainerInfo(id=f"{i:064x}", name=f"/app-{i}", image="app:1", labels=labels, stats=ContainerStats())
            for i, labels in enumerate(pods)]),
        processes_info=ProcessesInfo(processes=[
            ProcessInfo(pid=100 + i, ppid=1, name=f"worker-{i % 10}", cmdline=f"/usr/bin/worker-{i % 10}")
            for i in range(TYPICAL_PROCESSES)]))


def typical_host_warning(settings: Settings) -> str | None:
    """What to say at start when a host of a usual size does not fit
    ``agents.memory_budget`` with the metric history ``storage.max_data_age``
    keeps: its reports would get 413 ``memory_budget_exceeded`` (the
    configuration check refuses only a budget a bare host does not fit)."""
    budget = memory_budget(settings)
    needed = budget.footprint(_typical_host(), 0).bytes
    if needed <= budget.limit:
        return None
    mib = 1024**2
    return (f"agents.memory_budget {format_size(budget.limit)} is below what a host of {TYPICAL_CONTAINERS} "
            f"containers in pods and {TYPICAL_PROCESSES} processes is estimated to take with "
            f"storage.max_data_age {format_duration_compact(settings.storage.max_data_age)} of metric history "
            f"({needed / mib:.1f} MiB): such hosts' reports will get 413 memory_budget_exceeded; raise "
            f"--agent-memory-budget to at least {format_size(-(-needed // mib) * mib)} or shorten --max-data-age")
