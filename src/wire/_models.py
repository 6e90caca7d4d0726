"""What a probe reports, as frozen records: the wire schema of ``POST /api/v1/reports``.

The shape follows the seed's report (``agent_id``, ``hostname``, ``timestamp``,
``host_info``, ``docker_info``, ``processes_info``, ``network_info``). Every
section and almost every field is optional, so a minimal report (the quick-start's)
and a full probe report are both valid; unknown fields are ignored, so newer probes
can talk to older servers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import attrs

from ._fields import (
    Address,
    Amount,
    ContainerId,
    Cores,
    Count,
    Identifier,
    LongText,
    Name,
    ParentPid,
    Percent,
    Pid,
    Port,
    Text,
    bounded_list,
    bounded_map,
)

frozen = attrs.frozen(kw_only=True)

ContainerState = Literal["created", "running", "paused", "restarting", "removing", "exited", "dead"]
Protocol = Literal["tcp", "udp", "tcp6", "udp6"]

# Named once at module level: with postponed annotations a call in an annotation
# would be evaluated again, creating a new, unchecked type.
Labels = bounded_map("Labels", max_items=512)
Metadata = bounded_map("Metadata", max_items=64)


@frozen
class CpuInfo:
    model: Name = ""
    cores: Cores = 0
    usage: Percent = 0.0
    """Share of all cores in use, 0..100."""


@frozen
class MemoryInfo:
    total_mb: Amount = 0.0
    used_mb: Amount = 0.0
    free_mb: Amount = 0.0
    available_mb: Amount = 0.0
    usage: Percent = 0.0


@frozen
class DiskInfo:
    mount_point: Text
    device: Text = ""
    fs_type: Name = ""
    total_mb: Amount = 0.0
    used_mb: Amount = 0.0
    free_mb: Amount = 0.0
    usage: Percent = 0.0


@frozen
class LoadAverage:
    load1: Amount = 0.0
    load5: Amount = 0.0
    load15: Amount = 0.0


@frozen
class NetworkInterface:
    name: Name
    addresses: InterfaceAddresses = attrs.field(factory=list)
    rx_bytes: Count = 0
    tx_bytes: Count = 0
    rx_bytes_per_sec: Amount = 0.0
    tx_bytes_per_sec: Amount = 0.0


@frozen
class HostInfo:
    hostname: Name = ""
    os: Name = ""
    platform: Name = ""
    kernel_version: Name = ""
    architecture: Name = ""
    ip_addresses: IpAddresses = attrs.field(factory=list)
    cpu_info: CpuInfo | None = None
    memory_info: MemoryInfo | None = None
    disks: Disks = attrs.field(factory=list)
    load_average: LoadAverage | None = None
    uptime_seconds: Amount = 0.0
    network_rx_bytes_per_sec: Amount = 0.0
    network_tx_bytes_per_sec: Amount = 0.0
    disk_read_bytes_per_sec: Amount = 0.0
    disk_write_bytes_per_sec: Amount = 0.0


@frozen
class PortMapping:
    container_port: Port
    protocol: Protocol = "tcp"
    host_ip: Address = ""
    host_port: Port | None = None


@frozen
class ContainerNetwork:
    name: Name
    ip_address: Address = ""


@frozen
class ContainerStats:
    cpu_percent: Amount = 0.0
    """Percent of one core (can exceed 100 on several cores)."""
    memory_usage_mb: Amount = 0.0
    memory_limit_mb: Amount = 0.0
    memory_percent: Percent = 0.0
    network_rx_bytes: Count = 0
    network_tx_bytes: Count = 0
    network_rx_bytes_per_sec: Amount = 0.0
    network_tx_bytes_per_sec: Amount = 0.0
    block_read_bytes: Count = 0
    block_write_bytes: Count = 0
    pids: Count = 0


@frozen
class ContainerInfo:
    id: ContainerId
    name: Name = ""
    image: Text = ""
    image_id: Name = ""
    state: ContainerState = "running"
    status: Text = ""
    created: datetime | None = None
    labels: Labels = attrs.field(factory=dict)  
    ports: Ports = attrs.field(factory=list)
    networks: Networks = attrs.field(factory=list)
    env_names: EnvNames = attrs.field(factory=list)
    env: Labels = attrs.field(factory=dict)  
    """Environment values, only when the probe is configured to send them."""
    command: LongText = ""
    pid: Pid | None = None
    """The container's main process, in the host's pid namespace."""
    stats: ContainerStats | None = None


@frozen
class DockerInfo:
    containers: Containers = attrs.field(factory=list)
    engine_version: Name = ""


@frozen
class ProcessInfo:
    pid: Pid
    ppid: ParentPid = 0
    name: Name = ""
    cmdline: LongText = ""
    user: Name = ""
    cpu_percent: Amount = 0.0
    """Percent of one core."""
    memory_rss_bytes: Count = 0
    threads: Count = 0
    status: Name = ""
    started_at: datetime | None = None
    container_id: ContainerId | None = None
    cgroup: LongText = ""
    """Raw ``/proc/<pid>/cgroup``; the server reads the container id from it when
    ``container_id`` is absent."""


@frozen
class ProcessesInfo:
    processes: Processes = attrs.field(factory=list)


@frozen
class Connection:
    protocol: Protocol = "tcp"
    local_address: Address = ""
    local_port: Port = 0
    remote_address: Address = ""
    remote_port: Port = 0
    state: Name = ""
    """``ESTABLISHED``, ``LISTEN``, ... as the kernel names them."""
    pid: Pid | None = None


@frozen
class NetworkInfo:
    connections: Connections = attrs.field(factory=list)
    interfaces: Interfaces = attrs.field(factory=list)


@frozen
class Report:
    """One probe's view of its host at ``timestamp``."""

    agent_id: Identifier
    timestamp: datetime
    hostname: Name = ""
    host_info: HostInfo | None = None
    docker_info: DockerInfo | None = None
    processes_info: ProcessesInfo | None = None
    network_info: NetworkInfo | None = None

    @property
    def host_name(self) -> str:
        """The host's name: ``hostname``, else ``host_info.hostname``, else the agent id."""
        if self.hostname:
            return self.hostname
        if self.host_info is not None and self.host_info.hostname:
            return self.host_info.hostname
        return self.agent_id


@frozen
class AgentRegistration:
    """``POST /api/v1/agents/register``."""

    agent_id: Identifier
    hostname: Name = ""
    metadata: Metadata = attrs.field(factory=dict)  
    timestamp: datetime | None = None


InterfaceAddresses = bounded_list("InterfaceAddresses", Address, 64)
IpAddresses = bounded_list("IpAddresses", Address, 256)
Disks = bounded_list("Disks", DiskInfo, 256)
Ports = bounded_list("Ports", PortMapping, 1024)
Networks = bounded_list("Networks", ContainerNetwork, 64)
EnvNames = bounded_list("EnvNames", Name, 1024)
Containers = bounded_list("Containers", ContainerInfo, 10_000)
Processes = bounded_list("Processes", ProcessInfo, 100_000)
Connections = bounded_list("Connections", Connection, 200_000)
Interfaces = bounded_list("Interfaces", NetworkInterface, 1024)
