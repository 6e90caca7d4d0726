"""The probe's collectors on this machine: what they report is valid for the
server's strict decoder and matches what the kernel says."""

from __future__ import annotations

import os
import socket

import orjson

from trioscope.wire import decode_report, encode
from trioscope_probe._collect import ReportCollector


def test_a_report_passes_the_servers_strict_decoder() -> None:
    report = ReportCollector("probe-unit").collect()
    assert decode_report(orjson.loads(orjson.dumps(encode(report)))) == report


def test_this_process_is_reported_with_its_parent() -> None:
    report = ReportCollector("probe-unit", connections=False).collect()
    assert report.processes_info is not None
    mine = next(p for p in report.processes_info.processes if p.pid == os.getpid())
    assert mine.ppid == os.getppid() and "python" in (mine.name + mine.cmdline).lower()
    assert mine.memory_rss_bytes > 0


def test_a_listening_socket_is_reported_with_its_process() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        report = ReportCollector("probe-unit", processes=False).collect()
    assert report.network_info is not None
    (found,) = [c for c in report.network_info.connections if c.local_port == port]
    assert (found.protocol, found.state, found.pid) == ("tcp", "listen", os.getpid())


def test_host_facts_and_rates() -> None:
    collector = ReportCollector("probe-unit", processes=False, connections=False)
    collector.collect()
    host = collector.collect().host_info
    assert host is not None and host.hostname == socket.gethostname()
    assert host.cpu_info is not None and host.cpu_info.cores == os.cpu_count()
    assert host.memory_info is not None and host.memory_info.total_mb > 0
    assert host.network_rx_bytes_per_sec >= 0 and host.uptime_seconds > 0
