"""What one agent's report contributes to the topology: its partition.

A partition is built once per report, in one pass over it, and never changes.
It holds the agent's nodes (its host, containers and processes), where each of
them sits (ancestry, for projecting connections onto views), the endpoints it
exposes to others (listening sockets, IP addresses) and the outgoing connections
it still has to resolve against everyone else's endpoints.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from functools import lru_cache
from operator import attrgetter
from sys import intern
from typing import Any

import attrs
import orjson

from trioscope.wire import (
    POD_UID, WILDCARDS, ContainerIds, ContainerInfo, ContainerNetwork, HostInfo, ListeningPorts, ProcessInfo, Report,
    is_connected, is_listener, is_loopback, normal_address, pod_of, protocol_family, service_of, socket_namespace,
)

from trioscope.domain.agents import io_rates
from trioscope.domain.clocks import report_time

from ._controls import controls_for
from ._engine_outage import (
    engine_metadata, engine_unreachable, expired, is_stale, kept_by_server, kept_containers, listed_state, listed_when,
    server_keeps,
)
from ._model import (
    VIEWS, Node, NodeKind, Reps, View, container_id, host_id, host_part, pod_id, process_id, reps, service_id,
)
from ._process_groups import group_of

# Endpoint keys: ("tcp", "10.0.0.5", 5432). The protocol family (tcp/tcp6) is
# folded: an IPv6 socket that listens on :: also accepts IPv4.
EndpointKey = tuple[str, str, int]


LocalKey = tuple[str, int, str | None]
"""A socket over loopback: (protocol, port, network: see ``Partition.networks``)."""

OutgoingConnection = tuple[str, str, str, int]
"""A connection this host opened (its client side): (source node, protocol,
remote address, remote port). The source is the most specific local node: the
process, else its container, else the host. A plain tuple: there are hundreds
per report and they are only ever compared and unpacked."""

_CONTAINER = VIEWS.index(View.CONTAINERS)
_HOLDS_PORTS = frozenset({"running", "paused"})
"""The states in which a container's published ports are its own: its engine
sets them up when it starts and gives them back when it stops, though Podman
still lists a stopped container's ports."""
_KTHREADD = 2
"""Linux starts every kernel thread from kthreadd, which is always pid 2."""


@lru_cache(maxsize=4096)
def namespace_network(netns: int) -> str:
    """The network a network namespace other than the probe's is (in
    ``Partition.networks``, ``LocalKey``): never a container's id, which names
    an inferred network (a report that says no namespaces). One string per
    namespace for all its sockets and nodes (a host's namespaces repeat from
    report to report; one beyond the cache's is made again)."""
    return f"netns:{netns}"


@attrs.frozen(kw_only=True, eq=False)
class Partition:
    agent_id: str
    host: str
    """Host node id."""
    report_time: float
    received_at: float
    nodes: Mapping[str, Node]
    reps: Mapping[str, Reps]
    """Each node's representative in every view (see ``Reps``)."""
    listeners: Mapping[EndpointKey, str]
    """Sockets reachable from other hosts: (protocol, ip, port) -> owning node
    (the ip as ``scoped_address``, as ``addresses``)."""
    local_listeners: Mapping[LocalKey, str]
    """Sockets reachable over loopback: (protocol, port, network) -> node,
    where network is the container whose network namespace the socket is in
    (``networks``), None for the host's."""
    networks: Mapping[str, str]
    """Node -> the network it is in, for the nodes in a network of their own
    (their loopback is not the host's); the others share the host's. Where
    the report says each socket's network namespace (``NetworkInfo.netns``):
    the processes with sockets in another than the probe's, and their
    containers, each in ``namespace_network`` of the first such socket's.
    Else (a probe from before it was sent), inferred: the containers with
    addresses of their own, each in the network of the container whose
    network it has (itself, or its pod's sandbox)."""
    addresses: Mapping[str, str]
    """IP addresses this host answers for -> host or container node (as ``scoped_address``)."""
    outgoing: tuple[OutgoingConnection, ...]
    pods: Mapping[str, tuple[str, ...]]
    """Pod id -> its container node ids on this host."""
    services: Mapping[str, tuple[str, ...]]
    """Service id -> its container node ids on this host."""
    process_groups: tuple[str, ...] = ()
    """The process groups its processes are in, each once (kernel threads are in none)."""
    shape: bytes = b""
    """``report_shape`` of the report it was built from: a later report of the
    same shape is built by ``refreshed`` (its nodes only)."""
    kinds: frozenset[NodeKind] = frozenset()
    """The kinds of its nodes (those of every partition of its shape)."""
    enrolled: bool = False
    """Whether an enrolled agent signed the report: only then do its containers
    offer controls (a control is delivered to that agent alone; the control
    endpoint refuses a container no enrolled agent reported). Not in the
    shape: a report of the same shape signed otherwise is built anew
    (``build_partition``), never ``refreshed`` from this one."""
    allowed: frozenset[str] | None = None
    """The controls its agent runs (``allowed_actions``; None: all of them):
    an enrolled agent's containers offer those only. Not in the shape either."""
    scope: str | None = None
    """The ``node_scope`` of the tenant whose enrolled probe sent the report
    (None: unsigned, or no tenant known), which its node ids carry. Not in
    the shape: a report of the same shape under another scope is built anew."""
    solo: tuple[str] = attrs.field(init=False, eq=False)
    """``(agent_id,)``: the graph's record of who describes each node only this
    agent describes, one tuple for all of them."""

    @solo.default
    def _solo(self) -> tuple[str]:
        return (self.agent_id,)

    def same_structure(self, other: Partition) -> bool:
        """Whether ``other`` places the same nodes the same way and exposes and
        opens the same endpoints: then only its nodes' contents (metrics,
        times, statuses) differ, and merging it moves no edge and no group
        member. The same objects when ``refreshed`` built it; else compared
        (each part at C speed: ~20 us for a typical host)."""
        return (self.reps is other.reps or (
            self.reps == other.reps and self.outgoing == other.outgoing and self.listeners == other.listeners
            and self.local_listeners == other.local_listeners and self.networks == other.networks
            and self.addresses == other.addresses
            and self.pods == other.pods and self.services == other.services))


def scoped_address(ip: str, scope: str | None) -> str:
    """How an address (not loopback) is known among the endpoints of the
    partitions of ``scope`` (``Partition.scope``): a connection of one is
    resolved against the addresses and listening sockets of that scope only
    (another tenant's private addresses are its own), never one's of another.
    The address escaped as a name in a node id is (an address is any text a
    probe sends: an unsigned report's ``10.0.0.5@<scope>`` is no tenant's)."""
    return host_part(ip, scope)


def _groups(labels: Mapping[str, str], scope: str | None) -> tuple[str | None, str | None]:
    """The ids of the pod and the service a container with ``labels`` is part of."""
    pod, service = pod_of(labels), service_of(labels)
    return pod_id(*pod, scope) if pod else None, service_id(*service, scope) if service else None


def _host_metadata(report: Report, info: HostInfo | None) -> tuple[dict[str, Any], dict[str, float]]:
    meta: dict[str, Any] = {"hostname": report.host_name, "agent_id": report.agent_id, **engine_metadata(report)}
    if (cut := report.left_out) is not None:
        # The probe cut its report to fit the server's limits: what the graph
        # shows of this host is not all of it, and the host's node says so.
        meta["left_out"] = {"processes": cut.processes, "connections": cut.connections, "containers": cut.containers}
    unreadable: set[str] = set()
    if (gaps := report.gaps) is not None:
        # The probe could not see all of its host (rights, namespaces): the
        # host's node says so, and what it could not read is no metric of 0.
        meta["gaps"] = {"unowned_sockets": gaps.unowned_sockets, "hidden_threads": gaps.hidden_threads,
                        "own_pid_namespace": gaps.own_pid_namespace,
                        "own_network_namespace": gaps.own_network_namespace, "unreadable": list(gaps.unreadable)}
        unreadable = set(gaps.unreadable)
    metrics: dict[str, float] = {}
    if info is None:
        return meta, metrics
    for key in ("os", "platform", "kernel_version", "architecture"):
        if getattr(info, key):
            meta[key] = getattr(info, key)
    if info.ip_addresses:
        meta["ip_addresses"] = list(info.ip_addresses)
    if "uptime" not in unreadable:
        meta["uptime_seconds"] = info.uptime_seconds
    if info.cpu_info is not None:
        meta["cpu_model"] = info.cpu_info.model
        meta["cpu_cores"] = info.cpu_info.cores
        metrics["cpu_usage"] = info.cpu_info.usage
    if info.memory_info is not None:
        meta["memory_total_mb"] = info.memory_info.total_mb
        metrics["memory_usage"] = info.memory_info.usage
        metrics["memory_used_mb"] = info.memory_info.used_mb
    if info.load_average is not None:
        metrics["load1"] = info.load_average.load1
        metrics["load5"] = info.load_average.load5
        metrics["load15"] = info.load_average.load15
    if info.disks:
        meta["disks"] = [{"mount_point": d.mount_point, "total_mb": d.total_mb, "usage": d.usage} for d in info.disks]
        metrics["disk_usage"] = max(d.usage for d in info.disks)
    metrics.update(io_rates(info, unreadable))
    return meta, metrics


def _container_node(c: ContainerInfo, host: str, agent_id: str, when: float, enrolled: bool,
                    allowed: frozenset[str] | None, scope: str | None) -> Node:
    name = c.name.lstrip("/") or c.id[:12]
    meta: dict[str, Any] = {
        "container_id": c.id,
        "name": name,
        "image": c.image,
        "state": c.state,
    }
    for key in ("image_id", "status", "command"):
        if getattr(c, key):
            meta[key] = getattr(c, key)
    if c.created is not None:
        meta["created"] = _created(c)
    if c.labels:
        meta["labels"] = dict(c.labels)
    if c.ports:
        meta["ports"] = [
            f"{p.host_ip + ':' if p.host_ip else ''}{p.host_port}->{p.container_port}/{p.protocol}"
            if p.host_port else f"{p.container_port}/{p.protocol}"
            for p in c.ports
        ]
    if c.networks:
        meta["networks"] = {n.name: ", ".join(a for a in (n.ip_address, n.ipv6_address) if a) for n in c.networks}
    if c.env_names:
        meta["env_names"] = list(c.env_names)
    if c.env:
        meta["env"] = dict(c.env)
    if enrolled:  # unsigned: no key at all, so that a signed report's controls win a merge (``merge_nodes``)
        meta["controls"] = controls_for(c.state, allowed)
    pod, service = _groups(c.labels, scope)
    if pod:
        meta["pod"] = pod
    if service:
        meta["service"] = service
    return Node(id=container_id(c.id, scope), kind=NodeKind.CONTAINER, label=name, parent=host, host=host,
                agent_id=agent_id, status=c.state, last_seen=when, metadata=meta, metrics=_container_metrics(c))


def _created(c: ContainerInfo) -> str | None:
    return c.created.isoformat().replace("+00:00", "Z") if c.created is not None else None


def _container_metrics(c: ContainerInfo) -> dict[str, float]:
    s = c.stats
    if s is None:
        return {}
    # What the UI sizes, colours and draws sparklines by; the rest of the
    # engine's statistics stay in the report (GET .../agents/{id}/latest).
    return {
        "cpu_percent": s.cpu_percent,
        "memory_mb": s.memory_usage_mb,
        "network_rx_bytes_per_sec": s.network_rx_bytes_per_sec,
        "network_tx_bytes_per_sec": s.network_tx_bytes_per_sec,
    }


def is_kernel_thread(p: ProcessInfo) -> bool:
    """Whether ``p`` is a Linux kernel thread, from fields every probe reports:
    kthreadd (pid 2) or one of its children, with no command line. A process the
    kernel starts in user space (a modprobe helper) has one, and so has pid 2 in
    a PID namespace of its own (a probe in a container sees no kernel threads)."""
    return not p.cmdline and (p.pid == _KTHREADD or p.ppid == _KTHREADD)


def _process_node(p: ProcessInfo, hostname: str, host: str, parent: str, container: Node | None,
                  agent_id: str, when: float, scope: str | None) -> Node:
    # Interned: a JSON parser makes a new string for every occurrence, and
    # 100,000 processes share a few dozen names, users and states.
    meta: dict[str, Any] = {"pid": p.pid, "ppid": p.ppid, "name": intern(p.name)}
    if p.cmdline:
        meta["cmdline"] = p.cmdline
    for key in ("user", "status"):
        if getattr(p, key):
            meta[key] = intern(getattr(p, key))
    if p.threads:
        meta["threads"] = p.threads
    if is_kernel_thread(p):
        meta["kernel_thread"] = True  # absent otherwise: 100,000 listed processes need not say False
    if p.started_at is not None:
        meta["started_at"] = p.started_at.isoformat().replace("+00:00", "Z")
    if container is not None:
        meta["container_id"] = container.id
        meta["container_name"] = container.label  # the one string of the container's node, shared
    return Node(
        id=process_id(hostname, p.pid, scope), kind=NodeKind.PROCESS, label=intern(p.name) or str(p.pid),
        parent=parent, host=host, agent_id=agent_id, status=intern(p.status) or "running", last_seen=when,
        metadata=meta,
        metrics={"cpu_percent": p.cpu_percent, "memory_mb": p.memory_rss_bytes / 1048576},
    )


_CONTAINER_SHAPE = attrgetter("id", "name", "labels", "image", "image_id", "env_names", "env", "command")
_PORT_SHAPE = attrgetter("container_port", "protocol", "host_ip", "host_port")


def _network_shape(network: ContainerNetwork) -> tuple[str, ...]:
    # The IPv6 address only where there is one: every other report keeps the
    # shape it had before the field was read.
    if network.ipv6_address:
        return network.name, network.ip_address, network.ipv6_address
    return network.name, network.ip_address


_PROCESS_FIELDS = ("pid", "ppid", "name", "cmdline", "user", "started_at", "container_id", "cgroup")
_CONNECTION_FIELDS = ("protocol", "local_address", "local_port", "remote_address", "remote_port", "state", "pid")
_PROCESS_SHAPE, _CONNECTION_SHAPE = attrgetter(*_PROCESS_FIELDS), attrgetter(*_CONNECTION_FIELDS)
# With the namespaces, for a report that says its own (the others' are read
# without them): a report that says none keeps the digest it had before
# namespaces were sent (replicas of both versions then agree on it).
_PROCESS_SHAPE_NS = attrgetter(*_PROCESS_FIELDS, "netns")
_CONNECTION_SHAPE_NS = attrgetter(*_CONNECTION_FIELDS, "netns")


SHAPE_BYTES = 16
"""The length of a ``report_shape`` digest."""


def report_shape(report: Report) -> bytes:
    """A digest (SHA-256 cut to 128 bits: with the CPU's SHA instructions,
    which OpenSSL uses, half the time of BLAKE2b here) of every field of ``report`` that decides
    its partition's structure (which nodes, their places and groups, the
    endpoints and connections) and of the container and process fields that
    seldom change. Metrics, times, states, statuses and thread counts are left
    out (and a container's creation time, which some probes send as it is
    now less the uptime): two reports of one shape differ only in those. A digest, not the fields: keeping them per
    agent would cost ~40 KB each; a collision is as likely as in any 128-bit
    cryptographic hash, and a probe can craft none.

    ~0.1 ms for a host of 100 processes and 200 connections (a full build: ~1 ms)."""
    info = report.host_info
    containers = report.docker_info.containers if report.docker_info else ()
    processes = report.processes_info.processes if report.processes_info else ()
    connections = report.network_info.connections if report.network_info else ()
    own = report.network_info.netns if report.network_info else None
    document = (
        report.host_name,
        info.ip_addresses if info is not None else None,
        [(*_CONTAINER_SHAPE(c), list(map(_PORT_SHAPE, c.ports)), list(map(_network_shape, c.networks)))
         for c in containers],
        list(map(_PROCESS_SHAPE_NS if own else _PROCESS_SHAPE, processes)),
        list(map(_CONNECTION_SHAPE_NS if own else _CONNECTION_SHAPE, connections)),
        # The namespaces are inodes, the same in every report while they
        # exist: a report of the same structure keeps its shape.
        *(("netns", own) if own else ()),
        # Only when so, so that every other report's digest stays as it was: its
        # containers are then kept as last known (``kept_containers``), listed when it says.
        *(("engine unreachable", _listed_at(report)) if engine_unreachable(report) else ()),
    )
    return hashlib.sha256(orjson.dumps(document)).digest()[:SHAPE_BYTES]


def _listed_at(report: Report) -> str | None:
    listed_at = report.docker_info.listed_at if report.docker_info is not None else None
    return listed_at.isoformat() if listed_at is not None else None


def build_partition(report: Report, received_at: float, previous: Partition | None = None,
                    shape: bytes | None = None, *, enrolled: bool = False,
                    allowed: frozenset[str] | None = None, scope: str | None = None,
                    seen: float | None = None) -> Partition:
    """Everything ``report`` contributes, stamped with the report's own time
    on the server's clock: ``seen`` (``ReportTimes.seen``, by its agent's
    clock offset); None, the default: ``report_time`` with none.

    ``previous``: the agent's current partition. If ``report`` has its shape
    (``report_shape``), as a host's reports mostly do, only the nodes are built
    again and the rest is ``previous``'s (``refreshed``). ``shape``: the
    report's ``report_shape``, if the caller has it (found where the report
    was decoded, it need not be found again by each replica that merges it).
    ``enrolled``: an enrolled agent signed the report (``Partition.enrolled``);
    False, the default, offers no controls; ``allowed``: the controls that
    agent runs (``Partition.allowed``; None, the default: all of them);
    ``scope``: the ``node_scope`` of that agent's tenant (``Partition.scope``),
    which its node ids carry (None, the default: none).

    A report whose container engine does not answer shows its containers as
    last known (``kept_containers``), and those ``previous`` has if the
    report does not say its last listing (``kept_by_server``)."""
    if shape is None:
        shape = report_shape(report)
    if not enrolled:
        allowed = None  # no controls to restrict
    when = report_time(report, received_at) if seen is None else seen
    if not engine_unreachable(report):
        return _refreshed_or_built(report, received_at, when, previous, shape, enrolled, allowed, scope)
    keeps = server_keeps(report)
    kept = kept_by_server(previous, when) if keeps else []
    # Where a container is no longer kept, its processes may be placed in it:
    # built anew, they are in the containers their cgroups name (inferred).
    base = None if keeps and previous is not None and expired(previous, when) else previous
    partition = _refreshed_or_built(report, received_at, when, base, shape, enrolled, allowed, scope,
                                    [n.metadata["container_id"] for n in kept])
    return kept_containers(partition, previous, kept)


def _refreshed_or_built(report: Report, received_at: float, when: float, previous: Partition | None, shape: bytes,
                        enrolled: bool, allowed: frozenset[str] | None, scope: str | None,
                        kept: Sequence[str] = ()) -> Partition:
    """``refreshed`` from ``previous`` if it has ``report``'s shape and is
    of the same agent, signer and scope, else ``_build`` (``kept``: see its
    ``listed_before``)."""
    if (previous is not None and previous.shape == shape and previous.agent_id == report.agent_id
            and previous.enrolled == enrolled and previous.allowed == allowed and previous.scope == scope):
        return refreshed(previous, report, received_at, when, kept)
    return _build(report, received_at, when, shape, enrolled, allowed, scope, kept)


def refreshed(previous: Partition, report: Report, received_at: float, when: float,
              kept: Sequence[str] = ()) -> Partition:
    """The partition of ``report``, which has ``previous``'s shape: its nodes
    built from the report, where a container's or process's only changes are
    its metrics and time a copy of its node in ``previous`` with the new ones
    (building nodes from scratch is most of the cost of a build); everything
    else ``previous``'s own objects. Equal to what ``build_partition`` builds:
    built in full if a container that publishes ports was started or stopped
    (who has its ports changes, see ``_build``). ``kept``: see ``_build``.

    A container kept as last known (``is_stale``, the report's engine not
    answering, as ``previous``'s) is ``previous``'s node as it is while the
    report lists it as it was: its ``last_seen`` stays when it was listed.
    ``when``: the report's time on the server's clock (``build_partition``)."""
    listed = listed_when(report, when)
    agent = report.agent_id
    hostname = report.host_name
    host = previous.host
    info = report.host_info
    old = previous.nodes
    meta, metrics = _host_metadata(report, info)
    nodes: dict[str, Node] = {
        host: Node(id=host, kind=NodeKind.HOST, label=hostname, parent=None, host=None, agent_id=agent,
                   status="up", last_seen=when, metadata=meta, metrics=metrics)
    }
    containers = list({c.id: c for c in report.docker_info.containers}.values()) if report.docker_info else []
    for c in containers:
        was = old[container_id(c.id, previous.scope)]
        state = listed_state(was)
        if (state == c.state and was.metadata.get("status", "") == c.status
                and was.metadata.get("created") == _created(c)):
            node = was if is_stale(was) else was.seen(when, _container_metrics(c))
        else:
            if (state in _HOLDS_PORTS) != (c.state in _HOLDS_PORTS) and any(p.host_port for p in c.ports):
                # Started or stopped: its published ports, which the shape
                # leaves to its state, are taken or given back.
                return _build(report, received_at, when, previous.shape, previous.enrolled, previous.allowed,
                              previous.scope, kept)
            node = _container_node(c, host, agent, listed, previous.enrolled, previous.allowed, previous.scope)
        nodes[node.id] = node
    processes = list({p.pid: p for p in report.processes_info.processes}.values()) if report.processes_info else []
    # The same pids in the same order as ``previous``'s processes (the shape
    # holds them): each process's node there, without formatting its id.
    process = NodeKind.PROCESS
    before = [node for node in old.values() if node.kind is process]
    for p, was in zip(processes, before, strict=True):
        meta = was.metadata
        inside = meta.get("container_id")  # its container's node id
        container: Node | None = None
        if inside is not None:
            container = nodes.get(inside)
            if container is None:  # inferred from its processes (seen now), or kept as last known (as it was)
                container = old[inside] if is_stale(old[inside]) else old[inside].seen(when, {})
                nodes[inside] = container
        process_metrics = {"cpu_percent": p.cpu_percent, "memory_mb": p.memory_rss_bytes / 1048576}
        if meta.get("status", "") == p.status and meta.get("threads", 0) == p.threads and (
                container is None or meta.get("container_name") == container.label):
            node = was.seen(when, process_metrics)
        else:
            node = _process_node(p, hostname, host, was.parent or host, container, agent, when, previous.scope)
        nodes[node.id] = node
    return attrs.evolve(previous, report_time=when, received_at=received_at, nodes=nodes)


def _build(report: Report, received_at: float, when: float, shape: bytes, enrolled: bool,
           allowed: frozenset[str] | None = None, scope: str | None = None,
           listed_before: Sequence[str] = ()) -> Partition:
    """``listed_before``: the ids of the containers the engine listed before
    it stopped answering, beside the report's own, to which its processes'
    short ids resolve (``kept_containers`` then keeps their nodes)."""
    listed = listed_when(report, when)
    agent = report.agent_id
    hostname = report.host_name
    host = host_id(hostname, scope)
    info = report.host_info

    meta, metrics = _host_metadata(report, info)
    nodes: dict[str, Node] = {
        host: Node(id=host, kind=NodeKind.HOST, label=hostname, parent=None, host=None, agent_id=agent,
                   status="up", last_seen=when, metadata=meta, metrics=metrics)
    }
    node_reps: dict[str, Reps] = {host: reps(host=host)}
    host_ips = [ip for ip in map(normal_address, info.ip_addresses if info else []) if not is_loopback(ip)]
    addresses: dict[str, str] = {ip: host for ip in host_ips}
    pods: dict[str, list[str]] = {}
    services: dict[str, list[str]] = {}
    container_ips: dict[str, list[str]] = {}  # container node -> its IPs
    pod_ips: dict[str, list[str]] = {}  # pod uid -> its sandbox's IPs
    pod_networks: dict[str, str] = {}  # pod uid -> its sandbox's node
    networks: dict[str, str] = {}  # see Partition.networks
    in_pods: list[tuple[str, str]] = []  # (container node, pod uid) of the pods' containers without IPs
    # (host_ip, host_port, proto, container_port, node, whether its container holds it now)
    port_maps: list[tuple[str, int, str, int, str, bool]] = []

    # One entry per id (a repeated id: its last entry, for the node and its pod alike).
    containers = list({c.id: c for c in report.docker_info.containers}.values()) if report.docker_info else []
    for c in containers:
        node = _container_node(c, host, agent, listed, enrolled, allowed, scope)
        nodes[node.id] = node
        pod, service = _groups(c.labels, scope)
        node_reps[node.id] = reps(host=host, container=node.id, pod=pod, service=service)
        if pod:
            pods.setdefault(pod, []).append(node.id)
        if service:
            services.setdefault(service, []).append(node.id)
        ips = [normal_address(a) for n in c.networks for a in (n.ip_address, n.ipv6_address) if a]
        container_ips[node.id] = ips
        for ip in ips:
            addresses[ip] = node.id
        uid = c.labels.get(POD_UID)
        if ips:
            networks[node.id] = pod_networks.setdefault(uid, node.id) if uid else node.id
        if uid:
            if ips:
                pod_ips.setdefault(uid, ips)
            else:
                in_pods.append((node.id, uid))
        holds = c.state in _HOLDS_PORTS
        for p in c.ports:
            if p.host_port:
                port_maps.append((normal_address(p.host_ip), p.host_port, protocol_family(p.protocol),
                                  p.container_port, node.id, holds))

    # A pod's containers share its sandbox's (pause container's) network: only
    # the sandbox lists networks, and a socket its app container listens on
    # is on the pod's IPs, not the host's (unless the pod has the host's
    # network: then no container of it lists any).
    for node_id, uid in in_pods:
        container_ips[node_id] = pod_ips.get(uid, [])
        if uid in pod_networks:
            networks[node_id] = pod_networks[uid]

    ids = ContainerIds([*listed_before, *(c.id for c in containers)])
    processes = list({p.pid: p for p in report.processes_info.processes}.values()) if report.processes_info else []
    by_pid: dict[int, str] = {}
    process_groups: dict[str | None, None] = {}  # ordered set
    for p in processes:
        cid = ids.resolve(p)
        inside: Node | None = None
        if cid:
            inside = nodes.get(container_id(cid, scope))
            if inside is None:
                short = cid[:12]
                inside = Node(id=container_id(cid, scope), kind=NodeKind.CONTAINER, label=short, parent=host, host=host,
                              agent_id=agent, status="running", last_seen=when,
                              metadata={"container_id": cid, "name": short, "inferred": True})
                nodes[inside.id] = inside
                node_reps[inside.id] = reps(host=host, container=inside.id)
                container_ips.setdefault(inside.id, [])
        # The container node's own id string: one for all its processes, not one each.
        container = inside.id if inside is not None else None
        node = _process_node(p, hostname, host, container or host, inside, agent, when, scope)
        nodes[node.id] = node
        by_pid[p.pid] = node.id
        outer = node_reps[container] if container else node_reps[host]
        group = group_of(node)
        process_groups[group] = None
        node_reps[node.id] = reps(host=host, container=container, process=node.id,
                                  pod=outer[VIEWS.index(View.PODS)], service=outer[VIEWS.index(View.SERVICES)],
                                  process_group=group)

    listeners: dict[EndpointKey, str] = {}
    local: dict[LocalKey, str] = {}
    listening_ports = ListeningPorts()
    connections = report.network_info.connections if report.network_info else []

    def owner(pid: int | None) -> str:
        # The node's own id string, not a new one per connection.
        return by_pid.get(pid, host) if pid is not None else host

    own = report.network_info.netns if report.network_info else None
    # Where the report says each socket's namespace: the nodes in others
    # (``networks``: by their sockets', then by the processes' own, which
    # place a container none of whose processes has a socket, such as a
    # pod's infra container holding its addresses and published ports) and
    # the addresses of each other namespace, those of the first container
    # with addresses in it (a namespace's containers have its addresses: a
    # pod's, Docker's ``--network container:``). One with none has loopback
    # only (``--network none``, ``unshare -n``): its wildcard listeners are
    # on no address of the host's.
    namespace_ips: dict[int, list[str]] = {}
    if own is not None:
        networks = {}
        placed = [(conn.pid, conn.netns) for conn in connections if conn.pid is not None]
        placed += [(p.pid, p.netns) for p in processes if p.netns]
        for pid, netns in placed:
            node = by_pid.get(pid)
            if not netns or netns == own or node is None:
                continue  # a socket of no listed process is the host's own node's: not placed by it
            container = node_reps[node][_CONTAINER]
            network = networks.setdefault(node, namespace_network(netns))
            if container is not None:
                networks.setdefault(container, network)
                if container_ips.get(container):
                    namespace_ips.setdefault(netns, container_ips[container])

    def network_of(netns: int | None, container: str | None) -> str | None:
        """The network of a socket in ``netns`` of a node in ``container`` (None: the host's)."""
        if own is None:
            return networks.get(container) if container else None
        return None if netns == own or netns is None else namespace_network(netns)

    # Wildcard listeners of namespaces with no address the report knows (a
    # rootless engine's container: slirp4netns, pasta): reached through a
    # published port only.
    inside_only: list[tuple[str, int, str]] = []
    bound: dict[EndpointKey, int] = {}
    """How each listener entry was bound: 0 to its address, 1 to 0.0.0.0, 2 to ``::``."""
    for conn in connections:
        if not is_listener(conn.protocol, conn.state, conn.remote_address):
            continue
        proto, port, node = protocol_family(conn.protocol), conn.local_port, owner(conn.pid)
        netns = socket_namespace(conn.netns, own)
        listening_ports.add(proto, port, conn.local_address, netns)
        container = node_reps[node][_CONTAINER]
        address = normal_address(conn.local_address)
        if is_loopback(address) or address in WILDCARDS:
            # Reached over loopback only where it listens there: a listener on
            # another address of the same port took the loopback clients of the
            # one on 127.0.0.1 (whichever the report listed last).
            local[(proto, port, network_of(netns, container))] = node
        if is_loopback(address):
            continue
        if address in WILDCARDS:
            if own is not None:
                reachable = host_ips if netns == own else namespace_ips.get(netns or own, [])
                if not reachable:
                    inside_only.append((proto, port, node))
            else:
                # A container without addresses of its own (or of its pod's)
                # shares the host's network.
                reachable = (container_ips.get(container) if container else None) or host_ips
            # The kernel's choice among listeners on one port: a socket bound
            # to the address, else one on 0.0.0.0 for an IPv4 address (beside
            # which a socket on ``::`` can only be IPv6-only), else one on
            # ``::`` (IPv4 too where alone). Whichever the report listed last
            # took them all before.
            ipv4_only = address == "0.0.0.0"
            rank = 1 if ipv4_only else 2
            for ip in reachable:
                if ipv4_only and ":" in ip:
                    continue
                key = (proto, ip, port)
                if rank <= bound.get(key, rank):
                    listeners[key] = node
                    bound[key] = rank
        else:
            listeners[(proto, address, port)] = node
            bound[(proto, address, port)] = 0
    # A published port reaches the process listening inside the container: the
    # first listener on (protocol, port) in that container, looked up in an
    # index rather than by a scan of every listener per published port (which
    # took 0.6 s for 4,000 of each).
    # Where the report says namespaces, in that container's network: it
    # reaches the process of any container sharing it (a pod's, Podman's
    # ``--network container:``) when the container that publishes the port
    # is known to be in it, by a socket of its own.
    listening_inside: dict[tuple[str, int, str | None], str] = {}

    def index(key: EndpointKey, node: str) -> None:
        network = networks.get(node) if own is not None else None
        listening_inside.setdefault((key[0], key[2], network or node_reps.get(node, node_reps[host])[_CONTAINER]), node)

    for key, node in listeners.items():
        index(key, node)
    for proto, port, node in inside_only:
        index((proto, "", port), node)

    # A published port is its container's, even where a socket on the host
    # holds it: the engine's own (Docker's docker-proxy, Podman's conmon,
    # rootless engines' rootlessport or pasta, all outside any container)
    # listens on it, and a client connecting there reaches the container. So
    # the map of a started container takes its port from a host-side
    # listener, but not from a process in a container (one sharing the host's
    # network): in the published container it is the very process, more
    # precise than the map; in another it holds the port itself, which the
    # engine then cannot have for this container. A stopped container's map
    # (Podman lists it) takes a port only if no one else has it, and after
    # the started containers' maps (a container run again on the port of one
    # stopped); of two maps of one port, the first.
    def yields(node: str | None) -> bool:
        return node is None or node_reps.get(node, node_reps[host])[_CONTAINER] is None

    port_maps.sort(key=lambda port_map: not port_map[5])  # stable: started first, each in report order
    mapped: set[EndpointKey] = set()
    mapped_local: set[LocalKey] = set()
    for host_ip, host_port, proto, container_port, container, holds in port_maps:
        place = networks.get(container, container) if own is not None else container
        target = listening_inside.get((proto, container_port, place), container)
        for ip in ([host_ip] if host_ip and host_ip not in WILDCARDS else host_ips):
            key = (proto, ip, host_port)
            if key not in mapped and (key not in listeners or (holds and yields(listeners[key]))):
                listeners[key] = target
                mapped.add(key)
                index(key, target)
        port = (proto, host_port, None)  # the engine listens in the host's network
        # Over loopback only a map on every address or on loopback reaches the
        # container: beside one on a single other address, whoever listens on
        # loopback is someone else (the engine listens on that address alone).
        loopback = host_ip in WILDCARDS or is_loopback(host_ip)
        if port not in mapped_local and (port not in local or (holds and loopback and yields(local[port]))):
            local[port] = target
            mapped_local.add(port)

    outgoing: dict[OutgoingConnection, None] = {}  # ordered set
    for conn in connections:
        if not is_connected(conn.protocol, conn.state, conn.remote_address):
            continue
        proto = protocol_family(conn.protocol)
        if listening_ports.serves(proto, conn.local_port, conn.local_address, socket_namespace(conn.netns, own)):
            continue  # the server side of a connection: its client reports the edge
        source = owner(conn.pid)
        address = intern(normal_address(conn.remote_address))
        outgoing[(source, proto, address, conn.remote_port)] = None

    # Its endpoints are found by its tenant's connections alone (``scoped_address``):
    # another's hosts (private networks overlap) make them no one's.
    listeners = {(proto, scoped_address(ip, scope), port): node for (proto, ip, port), node in listeners.items()}
    addresses = {scoped_address(ip, scope): node for ip, node in addresses.items()}
    return Partition(
        agent_id=agent,
        host=host,
        report_time=when,
        received_at=received_at,
        nodes=nodes,
        reps=node_reps,
        listeners=listeners,
        local_listeners=local,
        networks=networks,
        addresses=addresses,
        outgoing=tuple(outgoing),
        pods={k: tuple(v) for k, v in pods.items()},
        services={k: tuple(v) for k, v in services.items()},
        process_groups=tuple(group for group in process_groups if group is not None),
        shape=shape,
        kinds=frozenset(node.kind for node in nodes.values()),
        enrolled=enrolled,
        allowed=allowed,
        scope=scope,
    )


def restricted(partition: Partition, allowed: frozenset[str] | None) -> Partition:
    """``partition`` (an enrolled agent's, built before its agent's controls
    were known: off the event loop, where the report was received) with its
    containers offering only ``allowed`` (None: all); its structure is its own."""
    if not partition.enrolled or partition.allowed == allowed:
        return partition
    nodes = dict(partition.nodes)
    for node_id, node in nodes.items():
        if node.kind is NodeKind.CONTAINER and "controls" in node.metadata:
            nodes[node_id] = node.evolve(metadata={**node.metadata, "controls": controls_for(node.metadata.get("state", ""), allowed)})
    return attrs.evolve(partition, nodes=nodes, allowed=allowed)
