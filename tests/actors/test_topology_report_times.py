"""Which report is an agent's newest, and where its metrics go in the
history: a probe's clock may run ahead of the server's (by up to 5 minutes),
and it may send what it buffered through an outage back to back."""

from __future__ import annotations

import time
from datetime import datetime

from tests.synthetic import host_report
from trioscope.actors.topology import GetNodeDetails, MergeReport
from trioscope.domain.topology import host_id
from trioscope.runtime import open_actor_system
from trioscope.system import TOPOLOGY, supervision_tree
from trioscope.wire import decode_report

HOST = host_id("host-1")


def merge(at: float, cpu: float, received_at: float) -> MergeReport:
    document = host_report(1, timestamp=at, containers=0, processes=1, connections=0, cpu=cpu)
    return MergeReport(decode_report(document), received_at=received_at)


async def test_reports_sent_back_to_back_each_keep_their_point_in_the_history(settings) -> None:
    """Merged every 50 ms, a newer report used to replace the one waiting, whose bucket lost its point."""
    now = time.time()
    start = now - now % 15 - 300
    async with open_actor_system(supervision_tree(settings)) as system:
        topology = system.lookup(TOPOLOGY)
        for step in range(12):
            topology.tell(merge(start + 15 * step, float(step), now))
        host = await topology.ask(GetNodeDetails(HOST, 3600))
        points = host["metrics_history"]["points"]
        assert [p["cpu_usage"] for p in points] == [float(step) for step in range(12)]


async def test_a_report_dated_ahead_does_not_hold_back_the_next_ones(settings) -> None:
    """Dated 200 s after it was received (a probe clock ahead: allowed), it
    made the next reports, rightly dated, look older: left out, the node held
    its values for 200 s and showed a time to come."""
    now = time.time()
    async with open_actor_system(supervision_tree(settings)) as system:
        topology = system.lookup(TOPOLOGY)
        topology.tell(merge(now + 200, 99.0, now))
        topology.tell(merge(now + 16, 3.0, now + 16))
        host = await topology.ask(GetNodeDetails(HOST, 3600))
        assert host["node"]["metrics"]["cpu_usage"] == 3.0
        assert datetime.fromisoformat(host["node"]["last_seen"].replace("Z", "+00:00")).timestamp() <= now + 17
        assert [p["cpu_usage"] for p in host["metrics_history"]["points"]][-1] == 3.0
