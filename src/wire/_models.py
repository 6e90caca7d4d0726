"""What a probe reports, as frozen records: the wire schema of ``POST /api/v1/reports``.

The shape follows the seed's report (``agent_id``, ``hostname``, ``timestamp``,
``host_info``, ``docker_info``, ``processes_info``, ``network_info``). Every
section and almost every field is optional, so a minimal report (the quick-start's)
and a full probe report are both valid; unknown fields are ignored, so newer probes
can talk to older servers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import attrs

from ._fields import (
    Address,
    Amount,
    ContainerId,
    Cores,
    Count,
    HostName,
    Identifier,
    LongText,
    Name,
    NetworkNamespace,
    ParentPid,
    Percent,
    Pid,
    Port,
    Text,
    bounded_list,
    bounded_map,
)

ContainerState = Literal["created", "running", "paused", "restarting", "removing", "exited", "dead"]
Protocol = Literal["tcp", "udp", "tcp6", "udp6"]

UnreadableSources: Any = bounded_list("UnreadableSources", Name, 32)
"""``Gaps.unreadable``: a probe reads a dozen sources."""

# Named once at module level: with postponed annotations a call in an annotation
# would be evaluated again, creating a new, unchecked type. Annotated Any: a NewType
# made by a call is opaque to a type checker (the converter checks these values).
Labels: Any = bounded_map("Labels", max_items=512)
Metadata: Any = bounded_map("Metadata", max_items=64)


@attrs.frozen(kw_only=True)
class CpuInfo:
    model: Name = ""
    cores: Cores = 0
    usage: Percent = 0.0
    """Share of all cores in use, 0..100."""


@attrs.frozen(kw_only=True)
class MemoryInfo:
    total_mb: Amount = 0.0
    used_mb: Amount = 0.0
    free_mb: Amount = 0.0
    available_mb: Amount = 0.0
    usage: Percent = 0.0


@attrs.frozen(kw_only=True)
class DiskInfo:
    mount_point: Text
    device: Text = ""
    fs_type: Name = ""
    total_mb: Amount = 0.0
    used_mb: Amount = 0.0
    free_mb: Amount = 0.0
    usage: Percent = 0.0


@attrs.frozen(kw_only=True)
class LoadAverage:
    load1: Amount = 0.0
    load5: Amount = 0.0
    load15: Amount = 0.0


@attrs.frozen(kw_only=True)
class NetworkInterface:
    name: Name
    addresses: InterfaceAddresses = attrs.field(factory=list)
    rx_bytes: Count = 0
    tx_bytes: Count = 0
    rx_bytes_per_sec: Amount = 0.0
    tx_bytes_per_sec: Amount = 0.0


@attrs.frozen(kw_only=True)
class HostInfo:
    hostname: HostName = ""
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


@attrs.frozen(kw_only=True)
class PortMapping:
    container_port: Port
    protocol: Protocol = "tcp"
    host_ip: Address = ""
    host_port: Port | None = None


@attrs.frozen(kw_only=True)
class ContainerNetwork:
    name: Name
    ip_address: Address = ""
    ipv6_address: Address = ""
    """Its global IPv6 address on that network, if it has one (Docker's
    ``GlobalIPv6Address``): connections to it are the container's too."""


@attrs.frozen(kw_only=True)
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


@attrs.frozen(kw_only=True)
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


@attrs.frozen(kw_only=True)
class DockerInfo:
    """The host's container engine, which the probe is configured with (a
    report without ``docker_info`` has none)."""

    containers: Containers = attrs.field(factory=list)
    engine_version: Name = ""
    reachable: bool = True
    """False: the engine does not answer the probe (its socket gone, its
    daemon stopped), ``problem`` says why; ``containers`` are then at most
    those it last listed, and the server shows the host's last known
    containers, in state ``unknown``, until it answers again. Absent (a
    probe from before it was sent): True."""
    problem: Name = ""
    """Why the engine does not answer, in a few words ("" while it does)."""
    listed_at: datetime | None = None
    """While the engine does not answer: when it last listed ``containers``,
    which the probe then repeats (without statistics) for at most
    ``KEEP_LISTED_SECONDS`` after, and none from then on. Given, the report
    says all the host's last known containers itself: the server keeps no
    others of its own (a report is the whole of its host, so a replica that
    rebuilds from the newest reports, or a restarted server, shows them
    too). None while the engine answers; from a probe from before it was
    sent, or one that has had no answer from its engine since it started:
    the server keeps the containers of the host's earlier reports, for as
    long."""


KEEP_LISTED_SECONDS = 24 * 3600.0
"""How long a host's last known containers are shown, in state ``unknown``,
while its container engine does not answer, after it last listed them. Long
enough for an outage over a night (with the engine away, no container can be
created or removed through it: the listing mostly stays true, and is said to
be the last known), bounded for an engine that never comes back (uninstalled,
or another configured): then, as on a host without one, the containers whose
processes the probe sees are inferred from their cgroups, the others gone."""


@attrs.frozen(kw_only=True)
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
    netns: NetworkNamespace | None = None
    """The process's network namespace, when it is not the probe's own
    (``NetworkInfo.netns``): places a container in its network even where
    none of its processes has a socket (a pod's infra container, which holds
    the pod's addresses and published ports for the others)."""


@attrs.frozen(kw_only=True)
class ProcessesInfo:
    processes: Processes = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class Connection:
    protocol: Protocol = "tcp"
    local_address: Address = ""
    local_port: Port = 0
    remote_address: Address = ""
    remote_port: Port = 0
    state: Name = ""
    """``ESTABLISHED``, ``LISTEN``, ... as the kernel names them, in either case
    (trioscope-probe sends psutil's names lowercased)."""
    pid: Pid | None = None
    netns: NetworkNamespace | None = None
    """The network namespace the socket is in, when it is not the probe's own
    (``NetworkInfo.netns``). Its addresses, loopback and ports are that
    namespace's: a listener on 127.0.0.1:80 there is not the host's."""


@attrs.frozen(kw_only=True)
class NetworkInfo:
    connections: Connections = attrs.field(factory=list)
    interfaces: Interfaces = attrs.field(factory=list)
    netns: NetworkNamespace | None = None
    """The probe's own network namespace: the one whose addresses
    ``host_info`` lists, and every connection's without a ``netns`` of its own
    (so that the host's many sockets need not repeat it). None (a probe from
    before namespaces were sent): no socket's namespace is known, and the
    server infers it, a socket of a container with addresses of its own being
    in that container's network, every other one in the host's."""
    sockets: Count | None = None
    """The sockets the probe found, when ``connections`` holds only those the
    server reads (``edge_sockets``: a busy host's are mostly the server sides
    of connections and pools to one endpoint); None: every one is there. The
    host's ``connections`` metric counts these."""


@attrs.frozen(kw_only=True)
class LeftOut:
    """What a probe left out of a report, or cut short, so that it fits the
    server's limits (its body size and its memory per agent): the operator is
    told on the host's node, not only in the probe's log on that host."""

    processes: Count = 0
    connections: Count = 0
    containers: Count = 0
    """Left out, or sent with their labels, environment or command cut."""


@attrs.frozen(kw_only=True)
class Gaps:
    """What a probe could not see of its host, for want of rights or because
    it does not run in the host's namespaces: the host's node says that what
    the graph shows of it is partial, and what to grant, where before only the
    probe's log on that host said so, or nothing did. Each is false or 0 when
    the probe saw it all."""

    unowned_sockets: Count = 0
    """Sockets of the probe's own network namespace whose process it could not
    find, because it may not read other processes' file descriptors (it is
    neither root nor granted CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH): the
    server gives them to the host, and their edges to local processes are missing."""
    hidden_threads: Count = 0
    """Threads of the host (the kernel's count) in processes hidden from the
    probe: /proc mounted with ``hidepid`` (systemd ``ProtectProc=invisible``)
    and the probe neither root, nor in its ``gid=``, nor granted CAP_SYS_PTRACE."""
    own_pid_namespace: bool = False
    """The probe runs in a PID namespace of its own (a container without the
    host's: Kubernetes ``hostPID``, ``--pid=host``): its processes are that
    container's, not the host's."""
    own_network_namespace: bool = False
    """The probe sees the host's processes but runs in a network namespace of
    its own (Kubernetes ``hostPID`` without ``hostNetwork``): the host's
    addresses are its own namespace's, and the host's sockets are reported as
    another namespace's."""
    unreadable: UnreadableSources = attrs.field(factory=list)
    """What the probe could not read this time (``memory``, ``network_io``,
    ``connections``...): left out of the report, the rest sent."""


@attrs.frozen(kw_only=True)
class Report:
    """One probe's view of its host at ``timestamp``."""

    agent_id: Identifier
    timestamp: datetime
    hostname: HostName = ""
    host_info: HostInfo | None = None
    docker_info: DockerInfo | None = None
    processes_info: ProcessesInfo | None = None
    network_info: NetworkInfo | None = None
    left_out: LeftOut | None = None
    """None: the report is whole."""
    gaps: Gaps | None = None
    """None: the probe saw all of its host."""

    @property
    def host_name(self) -> str:
        """The host's name: ``hostname``, else ``host_info.hostname``, else the agent id."""
        if self.hostname:
            return str(self.hostname)
        if self.host_info is not None and self.host_info.hostname:
            return str(self.host_info.hostname)
        return str(self.agent_id)


@attrs.frozen(kw_only=True)
class AgentRegistration:
    """``POST /api/v1/agents/register``."""

    agent_id: Identifier
    hostname: HostName = ""
    metadata: Metadata = attrs.field(factory=dict)
    timestamp: datetime | None = None


@attrs.frozen(kw_only=True)
class AgentHeartbeat:
    """``POST /api/v1/agents/heartbeat/{agent_id}``'s optional body (the agent is
    the path's). Other keys, such as the agent's ``timestamp``, are not read:
    a heartbeat is recorded at the server's time (agents' clocks differ), so
    a Go zero time or a number there is no error."""

    agent_id: Identifier | None = None


# Any: see Labels above.
InterfaceAddresses: Any = bounded_list("InterfaceAddresses", Address, 64)
IpAddresses: Any = bounded_list("IpAddresses", Address, 256)
Disks: Any = bounded_list("Disks", DiskInfo, 256)
Ports: Any = bounded_list("Ports", PortMapping, 1024)
Networks: Any = bounded_list("Networks", ContainerNetwork, 64)
EnvNames: Any = bounded_list("EnvNames", Name, 1024)
Containers: Any = bounded_list("Containers", ContainerInfo, 10_000)
Processes: Any = bounded_list("Processes", ProcessInfo, 100_000)
Connections: Any = bounded_list("Connections", Connection, 200_000)
Interfaces: Any = bounded_list("Interfaces", NetworkInterface, 1024)
