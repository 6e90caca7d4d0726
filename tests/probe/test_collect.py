"""The probe's collectors on this machine: what they report is valid for the
server's strict decoder and matches what the kernel says."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import types
from typing import Any

import orjson
import psutil
import pytest

from tests.process_end import end
from trioscope.wire import HostInfo, Report, decode_report, encode
from trioscope_probe import _collect, _rates
from trioscope_probe._collect import CPU_WINDOW, HostCollector, ReportCollector, masked_cmdline


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


@pytest.mark.parametrize(("argv", "shown"), [
    (["trioscope", "serve", "--database", "postgresql://u:hunter2@db/x"],
     "trioscope serve --database postgresql://u:***@db/x"),
    (["redis-server", "--url=redis://:p@ss@cache:6379/0"], "redis-server --url=redis://:***@cache:6379/0"),
    (["trioscope-probe", "--enrollment-token", "tsk_abc"], "trioscope-probe --enrollment-token ***"),
    (["app", "--api-key=k123", "--verbose"], "app --api-key=*** --verbose"),
    (["app", "--client-secret", "s3", "--port", "80"], "app --client-secret *** --port 80"),
    (["env", "DB_PASSWORD=hunter2", "PGPASSWD=x", "MODE=prod", "app"], "env DB_PASSWORD=*** PGPASSWD=*** MODE=prod app"),
    (["sh", "-c", "psql --password hunter2 postgresql://u:pw@db/x"],
     "sh -c psql --password *** postgresql://u:***@db/x"),
    (["app", "--token"], "app --token"),  # a flag with no value: nothing to hide
    (["app", "--no-token-check", "--port", "80"], "app --no-token-check --port 80"),
    (["nginx", "-g", "daemon off;"], "nginx -g daemon off;"),
    (["curl", "http://host:8080/x?a=b@c"], "curl http://host:8080/x?a=b@c"),
])
def test_secrets_in_command_lines_are_masked(argv: list[str], shown: str) -> None:
    assert masked_cmdline(argv) == shown


def test_a_processs_secrets_are_masked_in_the_report() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "--enrollment-token",
                                "tsk_very_secret", "--database=postgresql://u:hunter2@db/x"], stdin=subprocess.PIPE)
    try:
        report = ReportCollector("probe-unit", connections=False).collect()
    finally:
        assert process.stdin is not None
        process.stdin.close()
        end(process)
    assert report.processes_info is not None
    (found,) = [p for p in report.processes_info.processes if p.pid == process.pid]
    assert found.cmdline.endswith("--enrollment-token *** --database=postgresql://u:***@db/x"), found.cmdline


def test_a_huge_command_line_is_masked_within_a_bounded_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """A local user's 20 processes of 1.76 MB of argv made of words masking looks at
    took one collection 43 s (26 s of CPU): each line was masked whole, then cut."""
    masked: list[int] = []

    def counted(argv: list[str], start: int = 0) -> str:
        masked.append(len(" ".join(argv)))
        return masked_cmdline(argv, start)

    monkeypatch.setattr(_collect, "masked_cmdline", counted)
    words = "run " + " ".join(["--password=hunter2 token=s3cret postgresql://u:pw@db/x"] * 2000)  # ~110 KB
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "--api-key", "k-1",
                                *[words] * 16], stdin=subprocess.PIPE)
    try:
        listed = _collect.processes()
    finally:
        assert process.stdin is not None
        process.stdin.close()
        end(process)
    (found,) = [p for p in listed if p.pid == process.pid]
    assert max(masked) <= 2 * _collect.MAX_CMDLINE  # (MASKED_CMDLINE)
    assert len(found.cmdline) <= _collect.MAX_CMDLINE and "--api-key ***" in found.cmdline
    assert "hunter2" not in found.cmdline and "s3cret" not in found.cmdline and ":pw@" not in found.cmdline
    assert found.cmdline.count("--password=***") > 50


class _Clock:
    """The collector's ``time``: a monotonic clock of the test's, sleeps recorded, not slept."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waited: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waited.append(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_host_cpu_is_measured_over_half_a_second_at_least(monkeypatch: pytest.MonkeyPatch) -> None:
    """A first report made milliseconds after the start said 0 % or 100 % of a few clock ticks."""
    clock = _Clock()
    monkeypatch.setattr(_collect, "time", clock)
    collector = HostCollector()
    clock.now += 0.1  # made a tenth of a second after it started
    collector.collect()
    assert clock.waited == [pytest.approx(CPU_WINDOW - 0.1)]
    clock.now += CPU_WINDOW  # the next report, a window later: no wait
    collector.collect()
    assert clock.waited == [pytest.approx(CPU_WINDOW - 0.1)]


class _Host:
    """The host's counters as a test sets them, in place of psutil's and
    /proc/net/dev's; a source set to None refuses to be read."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cpu: tuple[float, float] | None = (0.0, 0.0)
        """Seconds busy (user) and idle, of all CPUs since boot."""
        self.disk: tuple[int, int] | None = (0, 0)
        """Bytes read and written."""
        self.nic: tuple[int, int] | None = (0, 0)
        """Bytes received and sent through the host's one NIC."""
        real = psutil.cpu_times()
        self._zero = type(real)(*[0.0] * len(real))
        monkeypatch.setattr(psutil, "cpu_times", self._cpu_times)
        monkeypatch.setattr(psutil, "disk_io_counters", self._disk_io_counters)
        monkeypatch.setattr(_collect, "_external_traffic", self._traffic)

    def _cpu_times(self, *_: object, **__: object) -> Any:
        if self.cpu is None:
            raise TypeError("unsupported operand type(s) for +: 'NoneType' and 'int'")  # an empty /proc/stat
        return self._zero._replace(user=self.cpu[0], idle=self.cpu[1])

    def _disk_io_counters(self, *_: object, **__: object) -> Any:
        if self.disk is None:
            raise PermissionError(13, "Permission denied: '/proc/diskstats'")
        return types.SimpleNamespace(read_bytes=self.disk[0], write_bytes=self.disk[1])

    def _traffic(self, *_: object) -> Any:
        if self.nic is None:
            raise PermissionError(13, "Permission denied: '/proc/net/dev'")
        return _collect._Traffic({"eth0": self.nic})


def test_rates_are_left_out_after_their_source_was_unreadable_until_read_twice_in_a_row(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """/proc/stat, /proc/diskstats and /proc/net/dev refused for a cycle, then
    readable again: the report after said 0 B/s of network and disk, with
    nothing to tell it from a real 0 (a dip in every history), and host CPU
    over the whole outage. A rate needs two readings in a row."""
    caplog.set_level(logging.INFO)
    clock = _Clock()
    monkeypatch.setattr(_collect, "time", clock)
    host = _Host(monkeypatch)
    collector = ReportCollector("probe-unit", processes=False, connections=False)

    def cycle() -> Report:
        clock.now += 1.0
        return collector.collect()

    host.cpu = host.disk = host.nic = None
    refused = cycle()
    assert refused.host_info is not None and refused.host_info.cpu_info is None
    assert refused.gaps is not None and refused.gaps.unreadable == ["cpu", "disk_io", "network_io"]
    host.cpu, host.disk, host.nic = (90.0, 10.0), (7_000, 9_000), (5_000, 3_000)  # the outage's, and more
    after = cycle()
    assert after.host_info is not None and after.host_info.cpu_info is None  # no share since the outage
    assert after.gaps is not None and after.gaps.unreadable == ["cpu", "disk_io", "network_io"]
    host.cpu, host.disk, host.nic = (91.0, 13.0), (7_100, 9_400), (5_800, 3_200)
    measured = cycle().host_info
    assert measured is not None and measured.cpu_info is not None and measured.cpu_info.usage == 25.0
    assert (measured.disk_read_bytes_per_sec, measured.disk_write_bytes_per_sec) == (100.0, 400.0)
    assert (measured.network_rx_bytes_per_sec, measured.network_tx_bytes_per_sec) == (800.0, 200.0)
    said = [r.getMessage() for r in caplog.records]
    # Each said once as unreadable, and once as read again: not again when its rate was left out.
    assert sorted(m.partition(" (")[0] for m in said if m.startswith("cannot read")) == [
        f"cannot read this host's {source}" for source in ("cpu", "disk_io", "network_io")]
    assert sorted(m for m in said if m.endswith("can be read again")) == [
        f"this host's {source} can be read again" for source in ("cpu", "disk_io", "network_io")]


def test_host_cpu_collected_from_another_thread_than_before_is_its_share_since_then(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``psutil.cpu_percent`` compares with the reading its calling thread
    made before: collected from a worker thread new to it (Trio's come and
    go), host CPU said 0 %."""
    clock = _Clock()
    monkeypatch.setattr(_collect, "time", clock)
    host = _Host(monkeypatch)
    collector = HostCollector()  # started here, collected from another thread
    host.cpu = (3.0, 1.0)
    clock.now += 1.0
    found: list[HostInfo] = []
    worker = threading.Thread(target=lambda: found.append(collector.collect()))
    worker.start()
    worker.join()
    (info,) = found
    assert info.cpu_info is not None and info.cpu_info.usage == 75.0


def test_loopback_traffic_is_not_host_network_traffic() -> None:
    collector = HostCollector()
    collector.collect()
    started = time.monotonic()  # (just after the reading the next rate is taken from)
    sent = 64 * 1024 * 1024
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as client, server.accept()[0] as peer:
        def drain() -> None:
            left = sent
            while left > 0:
                left -= len(peer.recv(1 << 20))
        reader = threading.Thread(target=drain)
        reader.start()
        client.sendall(b"\0" * sent)
        reader.join(timeout=30)
    host = collector.collect()
    seconds = time.monotonic() - started
    assert host.network_rx_bytes_per_sec * seconds < sent / 4, host.network_rx_bytes_per_sec


def test_the_first_report_measures_rates_from_the_collectors_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no counters to compare with, the first report after a probe started
    said 0 B/s of disk and 0 % for every process: a dip in every history."""
    written = iter([10_000_000, 60_000_000])  # the disk's bytes written: at the start, then at the report
    disk = psutil.disk_io_counters

    def counters(*args: Any, **kwargs: Any) -> Any:
        real = disk(*args, **kwargs)
        return None if real is None else real._replace(write_bytes=next(written))

    monkeypatch.setattr(psutil, "disk_io_counters", counters)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        collector = ReportCollector("probe-unit", processes=True, connections=False)
        report = collector.collect()
    finally:
        end(busy)
    assert report.host_info is not None and report.host_info.disk_write_bytes_per_sec > 0
    (shown,) = [p for p in report.processes_info.processes if p.pid == busy.pid]
    assert shown.cpu_percent > 10  # a core's busy loop, over half a second at least


def test_a_pool_of_sockets_and_their_server_sides_are_sent_as_one_edge_and_counted() -> None:
    """The server reads listeners and one client socket per process and
    endpoint: the rest, ~56x as many on a busy host, were sent (and were the
    first thing the memory budget cut, every edge with them)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        accepted = [server.accept()[0] for _ in clients]
        try:
            network = ReportCollector("probe-unit", processes=False, connections=True).collect().network_info
        finally:
            for each in clients + accepted:
                each.close()
    assert network is not None and network.sockets is not None and network.sockets >= 41
    mine = [c for c in network.connections if c.pid == os.getpid() and port in (c.local_port, c.remote_port)]
    assert sorted((c.state, c.local_port == port) for c in mine) == [("established", False), ("listen", True)]


def _refused(*_: object, **__: object) -> Any:
    raise PermissionError(13, "Permission denied: '/proc/meminfo'")


def test_sources_unreadable_at_start_leave_them_out_not_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreadable /proc/diskstats (PermissionError), an empty /proc/stat
    (TypeError in psutil), no /proc/diskstats at all (NotImplementedError)
    stopped the probe at start with a traceback."""
    def empty_stat(*_: object, **__: object) -> Any:
        raise TypeError("unsupported operand type(s) for +: 'NoneType' and 'int'")

    def no_diskstats(*_: object, **__: object) -> Any:
        raise NotImplementedError("couldn't find /proc/diskstats nor /sys/block")

    monkeypatch.setattr(psutil, "cpu_times", empty_stat)
    monkeypatch.setattr(psutil, "disk_io_counters", no_diskstats)
    monkeypatch.setattr(_collect, "_external_traffic", _refused)
    collector = HostCollector()
    assert set(collector.readings.failed) == {"cpu", "disk_io", "network_io"}
    monkeypatch.setattr(_collect.time, "sleep", lambda _: None)
    host = collector.collect()
    assert host.cpu_info is None and host.memory_info is not None and host.disk_read_bytes_per_sec == 0


def test_a_source_unreadable_while_running_is_left_out_said_once_and_the_rest_sent(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """An unreadable /proc/meminfo lost every cycle's whole report, with a
    34-line traceback each interval."""
    collector = ReportCollector("probe-unit", processes=False, connections=False)
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(psutil, "virtual_memory", _refused)
    for _ in range(3):
        report = collector.collect()
        assert report.host_info is not None and report.host_info.memory_info is None
        assert report.host_info.cpu_info is not None
        assert report.gaps is not None and report.gaps.unreadable == ["memory"]
    (said,) = [r.getMessage() for r in caplog.records if "memory" in r.getMessage()]
    assert said.startswith("cannot read this host's memory (PermissionError") and "Traceback" not in caplog.text
    monkeypatch.undo()
    gaps = collector.collect().gaps
    assert gaps is None or not gaps.unreadable  # (a machine whose probe runs in a container says that)
    assert caplog.records[-1].getMessage() == "this host's memory can be read again"


def test_the_hosts_own_socket_table_unreadable_is_said_and_the_report_sent(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Every connection of the host was dropped in silence."""
    collector = ReportCollector("probe-unit", processes=False, connections=True)
    monkeypatch.setattr(psutil, "net_connections", _refused)
    report = collector.collect()
    assert report.gaps is not None and "connections" in report.gaps.unreadable
    assert any(r.getMessage().startswith("cannot read this host's connections") for r in caplog.records)


def test_a_process_started_since_the_last_listing_says_its_share_since_it_started() -> None:
    """psutil has no earlier reading of a process started between two listings
    and says 0 %: a busy job shorter than a cycle showed 0 % in every report."""
    collector = ReportCollector("probe-unit", processes=True, connections=False)
    collector.collect()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        process = psutil.Process(busy.pid)
        deadline = time.monotonic() + 30
        while sum(process.cpu_times()[:2]) < 0.05:  # it has run a while: its first reading is due
            assert time.monotonic() < deadline, "the busy child got no CPU in 30 s"
            time.sleep(0.01)
        report = collector.collect()
    finally:
        end(busy)
    (shown,) = [p for p in report.processes_info.processes if p.pid == busy.pid]
    assert shown.cpu_percent > 0


def test_a_process_listed_before_says_its_share_since_that_listing_not_since_it_started() -> None:
    """Only a process new since the last listing is measured from its start: one
    busy at first and idle since was listed, and its share since is ~0."""
    busy_then_idle = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
         "print('idle', flush=True)\ntime.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert busy_then_idle.stdout is not None and busy_then_idle.stdout.readline() == "idle\n"
        collector = ReportCollector("probe-unit", processes=True, connections=False)
        collector.collect()
        report = collector.collect()
    finally:
        end(busy_then_idle)
    (shown,) = [p for p in report.processes_info.processes if p.pid == busy_then_idle.pid]
    assert shown.cpu_percent < 5, shown.cpu_percent  # since it started: 0.3 s of CPU in a few seconds


def test_a_process_new_at_one_listing_is_measured_from_that_listing_at_the_next() -> None:
    """Once listed, a process started after the probe is measured as any other:
    kept as new, it would say its share since it started in every report."""
    collector = ReportCollector("probe-unit", processes=True, connections=False)
    collector.collect()
    busy_then_idle = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
         "print('idle', flush=True)\ntime.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert busy_then_idle.stdout is not None and busy_then_idle.stdout.readline() == "idle\n"
        first = collector.collect()
        second = collector.collect()
    finally:
        end(busy_then_idle)
    (new,) = [p for p in first.processes_info.processes if p.pid == busy_then_idle.pid]
    (listed,) = [p for p in second.processes_info.processes if p.pid == busy_then_idle.pid]
    assert new.cpu_percent > 0
    assert listed.cpu_percent < 5, listed.cpu_percent  # idle since the first


@pytest.mark.parametrize(("busy", "started", "now", "share"), [
    (1.0, 100.0, 104.0, 25.0),    # a second of CPU in four
    (3.0, 100.0, 101.0, 300.0),   # three cores' worth
    (0.02, 100.0, 100.0, 200.0),  # started within a tick of now: a tick ago
    (0.0, 100.0, 90.0, 0.0),      # "started" after now (clocks apart): none
])
def test_a_share_since_start(busy: float, started: float, now: float, share: float) -> None:
    assert _rates.share_since_start(busy, started, now) == pytest.approx(share)
