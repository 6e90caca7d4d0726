"""What the probe sees on this host, as the server's report model.

Host and processes come from psutil (which reads /proc); connections from one
``psutil.net_connections`` pass (it reads /proc/net/{tcp,udp}{,6} once and maps
socket inodes to pids), which sees the probe's own network namespace only, and
from the tables of every other namespace (``_netns``: containers on a bridge
network); each process's container from its ``/proc/<pid>/cgroup``.
Rates (CPU, network, disk) need two readings in a row, so a ``HostCollector``
keeps each source's last counters between cycles (``_rates``).
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import time
from datetime import UTC, datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import psutil

from trioscope.wire import (
    Connection, CpuInfo, DiskInfo, HostInfo, LoadAverage, MemoryInfo, NetworkInfo, NetworkInterface,
    ProcessesInfo, ProcessInfo, Report, container_id_from_cgroup, edge_sockets,
)

from ._docker import ContainerCollector
from ._masking import cut_argv, masked_cmdline
from ._netns import MAX_CONNECTIONS, NamespaceSockets, own_namespace
from ._os_text import os_text
from ._rates import LastReadings, busy_percent, per_second, share_since_start
from ._rights import Sight
from ._uplinks import uplinks

T = TypeVar("T")
D = TypeVar("D")

MB = 1024 * 1024
MAX_CMDLINE = 4096
MASKED_CMDLINE = 2 * MAX_CMDLINE
"""Characters of a command line masked at most (``cut_argv``), then cut to
``MAX_CMDLINE``: masking takes time linear in the line, and a local user's
argv may be 2 MB; twice the shown length leaves room for what masking shortens."""
_PSEUDO_FS = {"tmpfs", "devtmpfs", "overlay", "squashfs", "proc", "sysfs", "cgroup", "cgroup2", "nsfs"}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit]


CPU_WINDOW = 0.5
"""Shortest time host CPU is measured over: a first report (or ``--once``)
made milliseconds after the collector started would otherwise say 0 % or
100 % of a few clock ticks. The first collection waits out the rest of it,
and the host's network and disk rates and every process's CPU share are
measured from the collector's start over it too: with no counters to compare
with, the first report said 0 B/s and 0 %, a dip in every history and a false
alarm at each probe's start."""


class Readings:
    """What each source of a report (``_rights.SOURCES``) failed with this
    cycle: one file of /proc or /sys that cannot be read, or reads as the
    kernel never writes it, loses that source, not the report (an unreadable
    /proc/meminfo lost every report with a traceback, and one at start
    stopped the probe). ``Sight`` says each, ``Gaps.unreadable`` sends them."""

    def __init__(self) -> None:
        self.failed: dict[str, str] = {}
        self.unmeasured: set[str] = set()
        """Sources read this cycle but not the one before: their rates need
        two readings in a row, so they are left out this cycle (sent in
        ``Gaps.unreadable``, which the server reads as "no value", but not
        said as unreadable: they were read)."""

    def clear(self) -> None:
        """A new cycle: what failed before is read again, and said again only if it fails again."""
        self.failed.clear()
        self.unmeasured.clear()

    def read(self, source: str, read: Callable[[], T], default: D) -> T | D:
        """``read()``, or ``default`` with the failure kept under ``source``."""
        try:
            return read()
        except Exception as exc:  # noqa: BLE001  # psutil raises OSError, TypeError (an empty /proc/stat), NotImplementedError (no /proc/diskstats)
            self.failed.setdefault(source, f"{type(exc).__name__}: {exc}")
            return default


class HostCollector:
    """Host facts and counters; rates are per second since the previous call
    (host CPU over at least ``CPU_WINDOW``), taken only when that call read
    their source too (``LastReadings``). A source that cannot be read is left
    out (``readings``: which, and why), and its rates in the next call too
    (``Readings.unmeasured``)."""

    def __init__(self, readings: Readings | None = None) -> None:
        self.readings = readings if readings is not None else Readings()
        read = self.readings.read
        self._last = LastReadings()
        now = time.monotonic()
        self._last.swap("cpu", now, read("cpu", psutil.cpu_times, None))
        self._cpu_since = now
        self._last.swap("network_io", now, read("network_io", _external_traffic, None))
        self._last.swap("disk_io", now, read("disk_io", _disk_bytes, None))

    def _cpu_times(self) -> Any:
        """``psutil.cpu_times()``, once ``CPU_WINDOW`` has passed since the
        previous call (blocks the rest: run from a worker thread)."""
        rest = CPU_WINDOW - (time.monotonic() - self._cpu_since)
        if rest > 0:
            time.sleep(rest)
        self._cpu_since = time.monotonic()
        return psutil.cpu_times()

    def _since_last(self, source: str, now: float, counters: Any) -> tuple[float, Any] | None:
        """The last reading of ``source`` to take a rate from, or None: then
        this cycle's report leaves its rates out, unless it failed (said as such)."""
        before = self._last.swap(source, now, counters)
        if before is None and counters is not None:
            self.readings.unmeasured.add(source)
        return before

    def collect(self) -> HostInfo:
        """Raises nothing for a source that cannot be read: it is left out
        (None, or 0 for a rate or the uptime, which ``Gaps.unreadable`` tells from a real 0)."""
        read = self.readings.read
        cpu_times = read("cpu", self._cpu_times, None)
        now = time.monotonic()
        memory = read("memory", psutil.virtual_memory, None)
        net = read("network_io", _external_traffic, None)
        disk = read("disk_io", _disk_bytes, None)
        cpu_before = self._since_last("cpu", now, cpu_times)
        net_before = self._since_last("network_io", now, net)
        disk_before = self._since_last("disk_io", now, disk)
        cpu = None if cpu_before is None else busy_percent(cpu_before[1], cpu_times)
        # A source's "before" is None whenever this reading failed, which mypy cannot know.
        rx, tx = net.rates_since(net_before, now) if net_before is not None and net is not None else (0.0, 0.0)
        reads, writes = per_second(disk_before, now, disk) if disk_before is not None and disk is not None \
            else (0.0, 0.0)
        load = read("load", os.getloadavg, None)
        return HostInfo(
            hostname=hostname(),
            os=_clip(os_text(platform.system()), 256),
            platform=_clip(os_text(platform.platform()), 256),
            kernel_version=_clip(os_text(platform.release()), 256),
            architecture=_clip(os_text(platform.machine()), 256),
            ip_addresses=read("interfaces", host_addresses, [])[:256],
            cpu_info=None if cpu is None else CpuInfo(model=_clip(_cpu_model(), 256), cores=psutil.cpu_count() or 0,
                                                      usage=cpu),
            memory_info=None if memory is None else MemoryInfo(
                total_mb=memory.total / MB, used_mb=memory.used / MB, free_mb=memory.free / MB,
                available_mb=memory.available / MB, usage=memory.percent),
            disks=read("disks", _disks, []),
            load_average=None if load is None else LoadAverage(load1=load[0], load5=load[1], load15=load[2]),
            uptime_seconds=max(0.0, time.time() - read("uptime", psutil.boot_time, time.time())),
            network_rx_bytes_per_sec=rx, network_tx_bytes_per_sec=tx,
            disk_read_bytes_per_sec=reads, disk_write_bytes_per_sec=writes,
        )


def hostname() -> str:
    """This host's name as reports and the registration give it (``os_text``:
    one set with bytes that are not UTF-8, ``unshare -u``, stopped the probe)."""
    return _clip(os_text(socket.gethostname()), 256)


def _disk_bytes() -> tuple[int, int]:
    """Bytes read from and written to the host's disks since it booted; (0, 0)
    on a host with none (psutil's None: no disk, nothing read)."""
    counters = psutil.disk_io_counters()
    return (0, 0) if counters is None else (counters.read_bytes, counters.write_bytes)


@attrs.frozen
class _Traffic:
    by_interface: dict[str, tuple[int, int]]
    """Interface name -> (bytes received, bytes sent) since it came up."""

    def rates_since(self, previous: tuple[float, _Traffic], now: float) -> tuple[float, float]:
        """Bytes received and sent per second since ``previous`` (its time,
        before ``now``, and counters), over the interfaces in both: one that
        came or went between them would add its whole counters, or take them off."""
        received = sent = 0
        for name, (rx, tx) in self.by_interface.items():
            before = previous[1].by_interface.get(name)
            if before is not None:
                received, sent = received + max(0, rx - before[0]), sent + max(0, tx - before[1])
        return received / (now - previous[0]), sent / (now - previous[0])


def _external_traffic(root: Path = Path("/")) -> _Traffic:
    """Bytes through the host's uplinks (``uplinks``: its NICs), not loopback,
    bridges or containers' veths: a host talking to itself or its containers
    sends nothing over the network, and a packet that crosses a veth, a
    bridge and a NIC is counted once."""
    counters = psutil.net_io_counters(pernic=True)
    return _Traffic({name: (counters[name].bytes_recv, counters[name].bytes_sent)
                     for name in uplinks(counters, root)})


def host_addresses() -> list[str]:
    addresses = []
    for name, entries in psutil.net_if_addrs().items():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6) and not name.startswith("lo"):
                addresses.append(entry.address.split("%")[0])
    return addresses


def interfaces() -> list[NetworkInterface]:
    counters = psutil.net_io_counters(pernic=True)
    result = []
    for name, entries in list(psutil.net_if_addrs().items())[:1024]:
        io = counters.get(name)
        result.append(NetworkInterface(
            name=_clip(os_text(name), 256),
            addresses=[e.address.split("%")[0][:64] for e in entries
                       if e.family in (socket.AF_INET, socket.AF_INET6)][:64],
            rx_bytes=io.bytes_recv if io else 0, tx_bytes=io.bytes_sent if io else 0))
    return result


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", "rb") as cpuinfo:  # a hypervisor's brand string may be any bytes
            for line in cpuinfo:
                if line.startswith(b"model name"):
                    return os_text(line.partition(b":")[2].strip())
    except OSError:
        pass
    return os_text(platform.processor())


def _disks() -> list[DiskInfo]:
    disks = []
    for part in psutil.disk_partitions(all=False):
        if part.fstype in _PSEUDO_FS:
            continue
        try:
            usage = psutil.disk_usage(part.mountpoint)  # as psutil decoded it: the OS takes it back
        except OSError:
            continue
        disks.append(DiskInfo(mount_point=_clip(os_text(part.mountpoint), 1024),
                              device=_clip(os_text(part.device), 1024),
                              fs_type=_clip(os_text(part.fstype), 256), total_mb=usage.total / MB, used_mb=usage.used / MB,
                              free_mb=usage.free / MB, usage=usage.percent))
    return disks[:256]


_PROCESS_FIELDS = ["pid", "ppid", "name", "cmdline", "username", "memory_info", "num_threads", "status",
                   "create_time"]


def _cgroup(pid: int) -> str:
    """The process's /proc/<pid>/cgroup, as text (``os_text``: a cgroup is a
    directory any user with a delegated subtree may name with any bytes, and
    one that was not UTF-8 failed the whole listing, every process gone)."""
    try:
        with open(f"/proc/{pid}/cgroup", "rb") as handle:
            return os_text(handle.read(16384))
    except OSError:
        return ""


_BOOT_CLOCK: int | None = getattr(time, "CLOCK_BOOTTIME", None)
"""The clock a process's start is counted on (Linux's; elsewhere ``cpu_percent`` as it says)."""

Listed = frozenset[tuple[int, datetime]]
"""The processes of a listing, by pid and ``started_at`` (a pid used again is another process)."""


def processes(namespaces: dict[int, int] | None = None, listed: Listed | None = None) -> list[ProcessInfo]:
    """Every process. ``process_iter`` keeps its Process objects between calls, so
    ``cpu_percent`` is the share since the previous cycle (or since the
    ``ReportCollector`` started); a process not in the previous listing
    (``listed``, by pid and start; None, none known: as ``cpu_percent`` says),
    of which there is no reading to compare with, its share since it started
    (``share_since_start``). ``namespaces``: pid -> network namespace, for those not in this probe's."""
    namespaces = namespaces or {}
    result = []
    boot: float | None = None
    for proc in psutil.process_iter(_PROCESS_FIELDS):
        info = proc.info
        created = info.get("create_time")
        started_at = datetime.fromtimestamp(created, UTC) if created else None
        try:
            cpu = proc.cpu_percent(interval=None)  # also the reading the next listing compares with
            if listed is not None and created and _BOOT_CLOCK is not None and (info["pid"], started_at) not in listed:
                boot = psutil.boot_time() if boot is None else boot  # as create_time added it
                times = proc.cpu_times()
                cpu = share_since_start(times.user + times.system, created - boot, time.clock_gettime(_BOOT_CLOCK))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        pid = info["pid"]
        if pid <= 0:
            continue
        cgroup = _cgroup(pid)
        memory = info.get("memory_info")
        result.append(ProcessInfo(
            pid=pid, ppid=max(0, info.get("ppid") or 0),
            name=_clip(os_text(info.get("name") or ""), 256),
            # Made text before it is masked (masking reads what is shown), once cut: an argv of
            # 800,000 arguments made text whole cost 55-290 ms a process, every cycle. Cut
            # again after, as escapes (\xff) lengthen it.
            cmdline=_clip(masked_cmdline(cut_argv([os_text(a) for a in cut_argv(info.get("cmdline") or [],
                                                                                 MASKED_CMDLINE)],
                                                  MASKED_CMDLINE)),
                          MAX_CMDLINE),
            user=_clip(os_text(info.get("username") or ""), 256),
            cpu_percent=max(0.0, cpu),
            memory_rss_bytes=memory.rss if memory else 0,
            threads=info.get("num_threads") or 0,
            status=_clip(os_text(info.get("status") or ""), 256),
            started_at=started_at,
            container_id=container_id_from_cgroup(cgroup),
            cgroup=_clip(cgroup, 16384),
            netns=namespaces.get(pid),
        ))
    return result


_STATES = {"NONE": ""}


def _connection(stream: bool, local: tuple[str, int], remote: tuple[str, int] | None, status: str,
                pid: int | None, netns: int | None = None) -> Connection:
    """A socket as psutil describes it (``status`` in its names); ``netns``:
    its namespace, if not this probe's own."""
    return Connection(
        protocol="tcp" if stream else "udp",
        local_address=local[0][:64], local_port=local[1],
        remote_address=remote[0][:64] if remote else "", remote_port=remote[1] if remote else 0,
        state=_STATES.get(status, status.lower())[:256],
        pid=pid if pid and pid > 0 else None,
        netns=netns,
    )


def connections(namespaces: NamespaceSockets | None = None, readings: Readings | None = None) -> list[Connection]:
    """This probe's network namespace's sockets, then (with ``namespaces``)
    those of the others, each with its namespace, within what a report holds.
    Its own that cannot be read are kept in ``readings`` (``connections``)."""
    result: list[Connection] = []
    sockets = (readings or Readings()).read("connections", lambda: psutil.net_connections(kind="inet"), [])
    for conn in sockets:
        if conn.laddr:
            result.append(_connection(conn.type == socket.SOCK_STREAM, conn.laddr, conn.raddr or None, conn.status,
                                      conn.pid))
    if namespaces is not None:
        for entry, pid, netns in namespaces.collect(MAX_CONNECTIONS - len(result)):
            if entry.local:
                result.append(_connection(entry.protocol == "tcp", entry.local, entry.remote, entry.status, pid,
                                          netns))
    return result


class ReportCollector:
    """One report per call: host, processes and connections, as configured."""

    def __init__(self, agent_id: str, *, processes: bool = True, connections: bool = True,
                 containers: ContainerCollector | None = None) -> None:
        self.agent_id = agent_id
        self.with_processes = processes
        self.with_connections = connections
        self.containers = containers
        self.readings = Readings()
        self.host = HostCollector(self.readings)
        self.namespaces = NamespaceSockets() if connections else None
        self.sight = Sight()  # says at start what the probe cannot see
        self._listed: Listed | None = None
        """The processes of the last listing that was read (``processes``' ``listed``)."""
        if processes:
            self._listed = self.readings.read("processes", _start_cpu_shares, None)

    def _processes(self, namespaces: dict[int, int] | None) -> list[ProcessInfo] | None:
        found = self.readings.read("processes", lambda: processes(namespaces, self._listed), None)
        if found is not None:  # else those started since the last listing are still new
            self._listed = frozenset((p.pid, p.started_at) for p in found if p.started_at is not None)
        return found

    def collect(self) -> Report:
        self.readings.clear()
        host = self.host.collect()
        docker_info = self.containers.collect() if self.containers is not None else None
        # The connections first: listing them lists each process's namespace.
        found = connections(self.namespaces, self.readings) if self.with_connections else []
        others = self.namespaces.others if self.namespaces is not None else None
        own = own_namespace() if self.namespaces is not None else None
        sent = edge_sockets(found, own)
        listed = self._processes(others) if self.with_processes else None
        return Report(
            agent_id=self.agent_id,
            timestamp=datetime.now(UTC),
            hostname=host.hostname,
            host_info=host,
            docker_info=docker_info,
            processes_info=None if listed is None else ProcessesInfo(processes=listed),
            network_info=NetworkInfo(connections=sent,
                                     interfaces=self.readings.read("interfaces", interfaces, []),
                                     # Said only with the other namespaces' sockets, which carry theirs.
                                     netns=own,
                                     sockets=len(found) if len(sent) < len(found) else None),
            gaps=self.sight.gaps(connections=found if self.with_connections else None, processes=listed,
                                 unreadable=self.readings.failed, unmeasured=self.readings.unmeasured),
        )


def _start_cpu_shares() -> Listed:
    """process_iter keeps its Process objects: the first report's shares are
    since now (a process started later: since it started). The processes found."""
    found = []
    for proc in psutil.process_iter(["create_time"]):
        with contextlib.suppress(psutil.Error):
            proc.cpu_percent(interval=None)
            if created := proc.info.get("create_time"):
                found.append((proc.pid, datetime.fromtimestamp(created, UTC)))
    return frozenset(found)
