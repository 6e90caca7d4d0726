"""A replica rebuilding history from the report stream merges each agent's
reports in turn (``MergeReport.history``); the process groups' and pods'
history it records must be what a replica that merged them live recorded.
It was not: the groups' sums were recorded once per version, at every metric
time of the batch, so a replay wrote each report's bucket with the batch's
last sums (47 of 60 process groups differed after a restart; pods too)."""

from __future__ import annotations

import time
from typing import Any

from tests.synthetic import host_report
from trioscope.actors.topology import GetNodeDetails, GetSnapshot, MergeReport
from trioscope.domain.topology import pod_id, process_group_id
from trioscope.runtime import open_actor_system
from trioscope.system import TOPOLOGY, supervision_tree
from trioscope.wire import decode_report

STEPS = 3
"""Reports of one host, a minute apart (each in a bucket of its own)."""


def _reports(now: float) -> list[dict[str, Any]]:
    reports = []
    for step in range(STEPS):
        document = host_report(1, timestamp=now - 60 * (STEPS - 1 - step), containers=2, processes=13,
                               connections=0, container_load=10.0 * step)
        for process in document["processes_info"]["processes"]:
            process["cpu_percent"] = 10.0 * (step + 1)  # each step's sums differ
        reports.append(document)
    return reports


async def _histories(settings: Any, reports: list[dict[str, Any]], *, replayed: bool) -> dict[str, list[Any]]:
    async with open_actor_system(supervision_tree(settings)) as system:
        topology = system.lookup(TOPOLOGY)
        for document in reports:
            received = decode_report(document).timestamp.timestamp()
            topology.tell(MergeReport(decode_report(document), received_at=received, history=replayed))
            if not replayed:
                await topology.ask(GetSnapshot())  # a version each, as reports come live
        await topology.ask(GetSnapshot())
        found = {}
        for node in (process_group_id("host-1", "worker-0"), pod_id("prod", "web-1-0")):
            details = await topology.ask(GetNodeDetails(node, 3600))
            found[node] = [] if details is None else details["metrics_history"]["points"]
        return found


async def test_replayed_reports_record_the_groups_history_a_live_replica_records(settings) -> None:
    reports = _reports(time.time())
    live = await _histories(settings, reports, replayed=False)
    replayed = await _histories(settings, reports, replayed=True)
    group = process_group_id("host-1", "worker-0")
    assert [p["cpu_percent"] for p in live[group]] == [10.0, 20.0, 30.0], live[group]  # one worker-0 per 13
    assert len(live[pod_id("prod", "web-1-0")]) == STEPS
    assert replayed == live
