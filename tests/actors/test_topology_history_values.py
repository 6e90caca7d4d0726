"""Node details' metric history shows the decimals reported (0.1), not their
float32 expansion (0.10000000149011612): hosts' and containers' history, and
processes', which is kept apart (``TopologyHistory.processes``)."""

from __future__ import annotations

import time

from tests.synthetic import host_report
from trioscope.actors.topology import GetNodeDetails, MergeReport
from trioscope.domain.topology import host_id, process_id
from trioscope.runtime import open_actor_system
from trioscope.system import TOPOLOGY, supervision_tree
from trioscope.wire import decode_report


async def test_a_tenth_reported_is_a_tenth_in_the_details_history(settings) -> None:
    now = time.time()
    document = host_report(1, timestamp=now, containers=0, processes=1, connections=0, cpu=0.1)
    for process in document["processes_info"]["processes"]:
        process["cpu_percent"] = 0.1
    async with open_actor_system(supervision_tree(settings)) as system:
        topology = system.lookup(TOPOLOGY)
        topology.tell(MergeReport(decode_report(document), received_at=now))
        host = await topology.ask(GetNodeDetails(host_id("host-1"), 3600))
        [point] = host["metrics_history"]["points"]
        assert (point["cpu_usage"], point["load1"]) == (0.1, 0.5)
        pid = document["processes_info"]["processes"][0]["pid"]
        process = await topology.ask(GetNodeDetails(process_id("host-1", pid), 3600))
        [point] = process["metrics_history"]["points"]
        assert point["cpu_percent"] == 0.1
