"""Metric history of process groups (the processes-by-name view), in-process
with the real supervision tree: a group's details have its sums over time as
pods' and services' do, kept as long as its processes' history."""

from __future__ import annotations

import time

import orjson

from tests.synthetic import host_report
from trioscope.actors.roster import ReportArrived
from trioscope.actors.topology import PROCESS_HISTORY, GetNodeDetails, GetSnapshot, GetStats, TopologyHistory
from trioscope.domain.agents import PackedReport
from trioscope.domain.topology import NodeKind, View, host_id
from trioscope.runtime import open_actor_system
from trioscope.system import ROSTER, TOPOLOGY, supervision_tree
from trioscope.wire import decode_report


async def deliver_merged(system, document: dict) -> None:
    """Hand ``document`` to the roster (what POST /api/v1/reports does) and
    wait for it to be merged: a read merges what is pending first."""
    report = decode_report(document)
    await system.lookup(ROSTER).ask(ReportArrived(report, PackedReport.pack(orjson.dumps(document)), time.time()))
    await system.lookup(TOPOLOGY).ask(GetSnapshot())


async def test_a_process_group_has_the_history_of_its_sums(settings):
    now = time.time()
    async with open_actor_system(supervision_tree(settings)) as system:
        for age, cpu in ((60, 10.0), (30, 20.0), (0, 30.0)):
            document = host_report(1, timestamp=now - age, containers=1, processes=3, connections=0)
            for process in document["processes_info"]["processes"]:
                process["name"], process["cpu_percent"] = "worker", cpu
            await deliver_merged(system, document)
        snapshot = await system.lookup(TOPOLOGY).ask(GetSnapshot())
        [group] = [n for n in snapshot.nodes(View.PROCESSES_BY_NAME) if n.host == host_id("host-1")]
        assert group.kind is NodeKind.PROCESS_GROUP and group.metrics["processes"] == 3.0
        details = await system.lookup(TOPOLOGY).ask(GetNodeDetails(group.id, 300))
        points = details["metrics_history"]["points"]
        # Its processes' metrics, summed, as the group's own
        assert [p["cpu_percent"] for p in points] == [30.0, 60.0, 90.0]
        assert all(p["memory_mb"] == group.metrics["memory_mb"] for p in points)
        stats = await system.lookup(TOPOLOGY).ask(GetStats())
        assert stats["storage"]["metric_series"] >= 3  # the host, its container, the group among them


def test_process_groups_keep_their_history_as_long_as_processes_do(settings):
    """There may be a group for every process (each of its own name): their
    history is bounded as the processes' is, not kept the full ``max_data_age``."""
    history = TopologyHistory.for_settings(settings, time.time())
    assert settings.storage.max_data_age > PROCESS_HISTORY
    assert history.process_groups.retention == history.processes.retention == PROCESS_HISTORY
    assert history.nodes.retention == settings.storage.max_data_age
