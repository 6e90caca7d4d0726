"""How much server memory an agent's report will hold, estimated before it is
merged, and the per-agent memory budget it must fit (``agents.memory_budget``).

Once merged, a report lives on as its agent's nodes (with their cached JSON
and metric history), the endpoints and client connections its connections
make, the edges those project onto every view, and its packed JSON (the
agent's latest report). The prices below were measured with tracemalloc
(``bench/agent_memory.py``, its calibration step), every ring full, and rounded up; they
hold for the worst case of each item, not its average, so a realistic host
takes well under its estimate (measured: about half).

The check is cheap: a bound from the lengths of the report's lists and the
size of its JSON settles most reports (34 us for a 36 KB one, 3% of decoding
it); a report that the bound does not clear is counted exactly (a pass over
it, about a fifth of the time decoding it took). A report far over the budget
is refused before it is even decoded: the least it may take, counted on its
parsed JSON (``MemoryBudget.check_document``), is over already.

Part of the wire and not of the topology: a report over the budget is refused
whole (413), host metrics and all, so the probe must know before it sends
what the server will accept; it leaves connections, then processes, out of
its report until this very estimate fits the budget the server states
(``/api/v1/agents/config/{id}``). The prices describe the server's memory
(measured against the topology's partition, ``tests/domain/test_footprint.py``),
but what the probe shares is the rule, not the topology.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import attrs

from ._addresses import (
    WILDCARDS, ListeningPorts, is_connected, is_listener, is_loopback, normal_address, protocol_family, socket_namespace,
)
from ._containers import ContainerIds
from ._labels import pod_of, service_of
from ._models import ContainerInfo, ProcessInfo, Report

VIEWS = 6
"""The topology's views (hosts, containers, processes, pods, services,
processes-by-name): the most an edge can appear in (``trioscope.domain.topology.View``)."""
RING_RESOLUTION = 15.0
"""Seconds per metric-history bucket (``timeseries.RESOLUTION``); a bucket is
one float32 per metric."""

AGENT_BYTES = 32 * 1024
"""The agent's actor and state, its host node and packed report's object
(measured 20.8 KiB of RSS per agent reporting only its host), before the
history of the host's 23 metrics (``HOST_METRICS``)."""
HOST_METRICS = 23
"""The host node's 11 metrics plus the agent's own 12 (``agents.host_metrics``)."""
PROCESS_BYTES = 2560
"""A process node: the node, its metadata and metrics, its cached JSON, its
place in the graph's indexes and the snapshot, and an empty history (measured
~2,050-2,250 B with a 35-character command line, depending on where the dicts
holding it are in their growth), before its 2 metrics' history."""
CONTAINER_BYTES = 4096
"""A container node, reported or inferred from a process's cgroup (measured
~3,300 B), before its 4 metrics' history; labels and the like are items."""
GROUP_BYTES = 4096
"""A pod or service node made from its containers' labels (measured ~4,000 B),
before its 3 metrics' history."""
ITEM_BYTES = 192
"""A label, environment entry or name, port, network, disk, address or
interface: its slot in a dict or list, the string objects and its share of the
node's cached JSON, before its characters (text)."""
ENDPOINT_BYTES = 256
"""One address a listening socket or published port is reachable on, or its
loopback entry (measured ~190 B each)."""
OUTGOING_BYTES = 832
"""One distinct client connection (process, protocol, address, port): its
entry, its far end's string and what resolving it records (measured ~800 B
when every far end is distinct), before its edges."""
EDGE_BYTES = 512
"""The edge a client connection may make in each view its source appears in
(hosts; processes; containers, pods and services when it runs in one):
counts, the edge, the snapshot's and the diff's (measured ~450 B a view with
every connection a distinct edge)."""
TEXT_BYTES = 2
"""Per byte of the characters of the report's strings: kept by a node, and
again in the packed latest report when it does not compress (random text)."""
JSON_DIVISOR = 8
"""The rest of the packed report: its JSON compresses at least 8 to 1 once the
strings (counted as text) are left aside (measured ~11 to 1).

Both hold for what the model knows. The packed report is the agent's JSON as
it came, keys the model does not know included (their text counted nowhere):
when the server has packed it, the check is given its size and charges what
it takes beyond this share (text once and JSON / 8) exactly (``Footprint.packed``)."""

EARLY_RECORDS = 4096
"""Records of each list ``MemoryBudget.check_document`` looks at first: a
report over the budget by its client connections alone has a few thousand
distinct ones (4 MiB at ~1.3 KiB each: ~3,100)."""

EARLY_BEYOND = 4
"""``check_document`` looks at a report only when the lengths of its lists
allow this many times the budget. Below, it has too few records for decoding
them to cost much (at most ~6,500 at 4 MiB: ~10 ms), and the look costs about
a third of the decoding: a host of 2,000 connections (2.3x) would pay it on
every report for nothing."""


_ESCAPE = re.compile(rb"\\u")
"""A JSON escape that may stand for a character that is not ASCII (a regular
expression finds it 3x faster than ``bytes.__contains__``: 18 us in 36 KB)."""


def ring_bytes(metrics: int, history: float) -> int:
    """The full history of ``metrics`` metrics kept ``history`` seconds."""
    return metrics * 4 * math.ceil(history / RING_RESOLUTION)


@attrs.frozen(kw_only=True)
class Footprint:
    """What one report would hold in the server, and the estimate in bytes."""

    nodes: int
    """Host, containers (reported, or inferred from processes' cgroups), pods,
    services and processes."""
    endpoints: int
    """Addresses its listening sockets and published ports are reachable on
    (each wildcard socket counted on as many addresses as the host or container
    that has the most), plus their loopback entries."""
    outgoing: int
    """Distinct client connections: (process or host, protocol, address, port)."""
    views: int
    """Views their edges may appear in: hosts, and processes, containers, pods
    and services when the report has any."""
    items: int
    """Labels, environment entries and names, ports, networks, disks, addresses
    and interfaces."""
    text: int
    """Bytes of its strings' characters (names, command lines, labels,
    addresses, ...; 4 a character for strings that are not ASCII)."""
    packed: int = 0
    """Bytes of the packed report the server keeps (the agent's latest), when
    known (0: not known, as to a probe fitting its report): charged exactly where
    they pass the estimate's share for it (``JSON_DIVISOR``)."""
    bytes: int
    """The estimate."""

    def as_dict(self) -> dict[str, int]:
        return attrs.asdict(self)


class OverBudget(Exception):
    """A report's footprint exceeds the agent's memory budget (``at_least``:
    the least it may be does, ``MemoryBudget.check_document``)."""

    def __init__(self, footprint: Footprint, limit: int, *, at_least: bool = False) -> None:
        packed = f", {_size(footprint.packed)} packed" if footprint.packed else ""
        about = "at least" if at_least else "about"
        super().__init__(f"this report would take {about} {_size(footprint.bytes)} of server memory "
                         f"({footprint.nodes} nodes, {footprint.outgoing} client connections, "
                         f"{footprint.endpoints} listening addresses, {footprint.items} labels and other items, "
                         f"{footprint.text} bytes of text{packed}); an agent may take {_size(limit)}")
        self.footprint = footprint
        self.limit = limit


@attrs.frozen(kw_only=True)
class MemoryBudget:
    """The most memory one agent's report may take (bytes), and the metric
    history the server keeps, which the estimate includes (seconds)."""

    limit: int
    history: float
    """For hosts, containers, pods and services (``storage.max_data_age``)."""
    process_history: float
    """For processes (at most ``history``)."""

    def check(self, report: Report, body: bytes, packed: int = 0) -> Footprint | None:
        """Raise ``OverBudget`` if ``report`` (decoded from ``body``, its JSON)
        does not fit.

        Args:
            packed: bytes of the report as the server keeps it (its
                ``PackedReport``): keys the model does not know are in it,
                and a report of them would otherwise pass at an eighth of
                their size (40 agents held 6.7 MiB each under a 4 MiB budget).

        Returns:
            None when a bound from the lengths of its lists settled it, else
            the exact footprint.
        """
        # Every string's characters are in the JSON; when the JSON is ASCII
        # without escapes, every string is ASCII too (a byte a character).
        plain = body.isascii() and (b"\\" not in body or _ESCAPE.search(body) is None)
        if plain and self.bound(report, len(body), packed).bytes <= self.limit:
            return None
        footprint = self.footprint(report, len(body), packed)
        if footprint.bytes > self.limit:
            raise OverBudget(footprint, self.limit)
        return footprint

    def check_document(self, document: Any, json_bytes: int) -> Footprint | None:
        """Raise ``OverBudget`` (``at_least``) if even the least the report
        parsed into ``document`` (from ``json_bytes`` of JSON) may take is over
        the budget: before it is decoded, which for a 10 MB report of 68,000
        connections took ~0.2 s holding the GIL, then as long again to count
        it exactly (the event loop's requests waiting), for a 413 all the
        same; this look took ~10 ms.

        Never refuses a report ``check`` would accept (``least``). Looked
        at only when the lengths of its lists allow ``EARLY_BEYOND`` times the
        budget; then the lists' first ``EARLY_RECORDS`` records first, then
        4x as many, and so on: a report far over the budget is refused after
        a few thousand of its records.

        Returns:
            None when not looked at, or when it is no valid report (left to
            the decoder, which says what is wrong); else the least footprint.
        """
        try:
            lists = _Lists.of(document)
            if self._most_least(lists, json_bytes) <= EARLY_BEYOND * self.limit:
                return None
            tally = _Tally(lists)
            counted, count = 0, EARLY_RECORDS
            while True:
                tally.count(counted, count)
                least = self._least(tally, json_bytes)
                if least.bytes > self.limit:
                    raise OverBudget(least, self.limit, at_least=True)
                if count >= lists.longest:
                    return least
                counted, count = count, count * 4
        except (AttributeError, TypeError, KeyError):  # a record of the wrong shape: a number's .upper(), no id
            return None

    def least(self, document: Any, json_bytes: int) -> Footprint:
        """At most the footprint of any valid report parsed into ``document``
        (a record may be a duplicate, its strings empty), part by part, from
        its JSON alone: the host; a node per distinct container id and process
        pid; an endpoint per listening socket; a client connection per
        distinct (protocol, address, port), its process left aside (as many or
        fewer than ``footprint`` counts), with edges in the views certainly
        there; the characters of the connections' addresses and states; the
        JSON's share. Pods, services, inferred containers, items, other text
        and the packed report count nothing.

        Raises:
            AttributeError, TypeError, KeyError: for a record of the wrong shape.
        """
        tally = _Tally(_Lists.of(document))
        tally.count(0, tally.lists.longest)
        return self._least(tally, json_bytes)

    def _least(self, tally: _Tally, json_bytes: int) -> Footprint:
        lists = tally.lists
        return self._price(nodes=(1, len(tally.containers), 0, len(tally.pids)), endpoints=tally.listeners,
                           outgoing=len(tally.outgoing), views=1 + 2 * bool(lists.processes) + bool(lists.containers),
                           items=0, text=tally.text, json_bytes=json_bytes, packed=0)

    def _most_least(self, lists: _Lists, json_bytes: int) -> int:
        """The most ``least`` can be, from the lists' lengths alone."""
        return self._price(nodes=(1, len(lists.containers), 0, len(lists.processes)), endpoints=0,
                           outgoing=len(lists.connections), views=VIEWS, items=0, text=json_bytes,
                           json_bytes=json_bytes, packed=0).bytes

    def footprint(self, report: Report, json_bytes: int, packed: int = 0) -> Footprint:
        """The report's footprint, counted as ``build_partition`` builds it
        (``packed``: as ``check``'s)."""
        containers = list({c.id: c for c in report.docker_info.containers}.values()) if report.docker_info else []
        processes = list({p.pid: p for p in report.processes_info.processes}.values()) if report.processes_info else []
        connections = report.network_info.connections if report.network_info else []
        pods = {p for c in containers if (p := pod_of(c.labels))}
        services = {s for c in containers if (s := service_of(c.labels))}
        ids = ContainerIds([c.id for c in containers])
        inferred = {cid for p in processes if (cid := ids.resolve(p)) and cid not in ids.known}
        pids = {p.pid for p in processes}

        reach, host_ips = _reach(report, containers), _host_ips(report)
        endpoints = 0
        listening = ListeningPorts()
        own = report.network_info.netns if report.network_info else None
        for conn in connections:
            if not is_listener(conn.protocol, conn.state, conn.remote_address):
                continue
            listening.add(conn.protocol, conn.local_port, conn.local_address, socket_namespace(conn.netns, own))
            address = normal_address(conn.local_address)
            endpoints += 1 + (0 if is_loopback(address) else reach if address in WILDCARDS else 1)
        for c in containers:
            for p in c.ports:
                if p.host_port:
                    endpoints += 1 + (1 if p.host_ip and p.host_ip not in WILDCARDS else host_ips)
        # As the partition keys them, but for the address's spelling (an
        # IPv4-mapped IPv6 address counts apart from the IPv4 one: never fewer).
        distinct: set[tuple[int | None, str, str, int]] = set()
        for conn in connections:
            if is_connected(conn.protocol, conn.state, conn.remote_address):
                family = protocol_family(conn.protocol)
                if not listening.serves(family, conn.local_port, conn.local_address, socket_namespace(conn.netns, own)):
                    distinct.add((conn.pid if conn.pid in pids else None, family, conn.remote_address, conn.remote_port))
        outgoing = len(distinct)
        # Processes show in two views: one by one, and grouped by name.
        views = 1 + 2 * bool(processes) + bool(containers or inferred) + bool(pods) + bool(services)
        return self._price(nodes=(1, len(containers) + len(inferred), len(pods) + len(services), len(processes)),
                           endpoints=endpoints, outgoing=outgoing, views=views, items=_items(report, containers),
                           text=_text(report, containers, processes), json_bytes=json_bytes, packed=packed)

    def bound(self, report: Report, json_bytes: int, packed: int = 0) -> Footprint:
        """At least the footprint, part by part, from the lengths of the
        report's lists: every inferred container has a process, every container
        makes at most a pod and a service, every string of an ASCII JSON
        document without escapes takes at most its length in it."""
        containers = report.docker_info.containers if report.docker_info else []
        processes = len(report.processes_info.processes) if report.processes_info else 0
        connections = len(report.network_info.connections) if report.network_info else 0
        published = sum(len(c.ports) for c in containers)
        return self._price(
            nodes=(1, len(containers) + processes, 2 * len(containers), processes),
            endpoints=connections * (1 + _reach(report, containers)) + published * (1 + max(1, _host_ips(report))),
            outgoing=connections, views=VIEWS if containers or processes else 1,
            items=_items(report, containers), text=json_bytes, json_bytes=json_bytes, packed=packed,
        )

    def _price(self, *, nodes: tuple[int, int, int, int], endpoints: int, outgoing: int, views: int, items: int,
               text: int, json_bytes: int, packed: int) -> Footprint:
        hosts, containers, groups, processes = nodes
        estimate = (
            hosts * (AGENT_BYTES + ring_bytes(HOST_METRICS, self.history))
            + containers * (CONTAINER_BYTES + ring_bytes(4, self.history))
            + groups * (GROUP_BYTES + ring_bytes(3, self.history))
            + processes * (PROCESS_BYTES + ring_bytes(2, self.process_history))
            + endpoints * ENDPOINT_BYTES
            + outgoing * (OUTGOING_BYTES + views * EDGE_BYTES)
            + items * ITEM_BYTES
            + text * TEXT_BYTES
            + json_bytes // JSON_DIVISOR
            # The packed report's share above is its text once and its JSON / 8;
            # what it takes beyond that (keys the model does not know) exactly.
            + max(0, packed - text - json_bytes // JSON_DIVISOR)
        )
        return Footprint(nodes=sum(nodes), endpoints=endpoints, outgoing=outgoing, views=views, items=items,
                         text=text, packed=packed, bytes=estimate)

    def as_dict(self) -> dict[str, Any]:
        """What ``/api/v1/agents/config/{id}`` states, for probes to fit their reports."""
        return {"memory_budget_bytes": self.limit, "metric_history_seconds": self.history,
                "process_metric_history_seconds": self.process_history}


@attrs.frozen
class _Lists:
    """A report's lists of records, as parsed from its JSON (empty where absent)."""

    containers: list[Any]
    processes: list[Any]
    connections: list[Any]

    @classmethod
    def of(cls, document: Any) -> _Lists:
        def records(section: str, name: str) -> list[Any]:
            part = document.get(section)
            items = part.get(name) if part is not None else None
            return items if type(items) is list else []

        return cls(records("docker_info", "containers"), records("processes_info", "processes"),
                   records("network_info", "connections"))

    @property
    def longest(self) -> int:
        return max(len(self.containers), len(self.processes), len(self.connections))


class _Tally:
    """``MemoryBudget.least``'s counts, a slice of each list at a time (the
    listening sockets all at once: a later one may take a client connection
    counted earlier out). The same values ``footprint`` counts: the decoder
    changes none; but the sockets' network namespaces are left aside, so a
    listener takes the client connections of its port in every namespace out
    (never more are counted than ``footprint`` counts)."""

    def __init__(self, lists: _Lists) -> None:
        self.lists = lists
        self.listened = ListeningPorts()
        self.listeners = 0
        for c in lists.connections:
            if is_listener(c.get("protocol", "tcp"), c.get("state", ""), c.get("remote_address", "")):
                self.listened.add(c.get("protocol", "tcp"), c.get("local_port", 0), c.get("local_address", ""))
                self.listeners += 1
        self.containers: set[Any] = set()
        self.pids: set[Any] = set()
        self.outgoing: set[tuple[str, Any, Any]] = set()
        self.text = 0

    def count(self, start: int, stop: int) -> None:
        """Count records ``start`` to ``stop`` of each list."""
        self.containers.update(c["id"] for c in self.lists.containers[start:stop])
        self.pids.update(p["pid"] for p in self.lists.processes[start:stop])
        for connection in self.lists.connections[start:stop]:
            remote, state = connection.get("remote_address", ""), connection.get("state", "")
            self.text += len(connection.get("local_address", "")) + len(remote) + len(state)
            protocol = connection.get("protocol", "tcp")
            if is_connected(protocol, state, remote):
                family = protocol_family(protocol)
                if not self.listened.serves(family, connection.get("local_port", 0),
                                            connection.get("local_address", "")):
                    self.outgoing.add((family, remote, connection.get("remote_port", 0)))


def _size(count: int) -> str:
    return f"{count / 1048576:.1f} MiB" if count >= 1048576 else f"{count / 1024:.0f} KiB"


def _host_ips(report: Report) -> int:
    info = report.host_info
    return sum(1 for a in info.ip_addresses if not is_loopback(a)) if info is not None else 0


def _reach(report: Report, containers: Sequence[ContainerInfo]) -> int:
    """Most addresses a wildcard socket can be reachable on: those of the host,
    or of the container that has the most."""
    return max(1, _host_ips(report), *(sum(1 for n in c.networks if n.ip_address) for c in containers))


def _items(report: Report, containers: Sequence[ContainerInfo]) -> int:
    info = report.host_info
    items = len(info.ip_addresses) + len(info.disks) if info is not None else 0
    items += sum(len(c.labels) + len(c.env) + len(c.env_names) + len(c.networks) + len(c.ports) for c in containers)
    if report.network_info is not None:
        items += sum(1 + len(i.addresses) for i in report.network_info.interfaces)
    return items


def _width(strings: list[str]) -> int:
    """Bytes the strings' characters take: one a character, four for a string
    that is not ASCII (one wide character makes the whole string wide; a
    section with any is counted wide throughout, which is cheaper to find)."""
    joined = "".join(strings)
    return len(joined) * (1 if joined.isascii() else 4)


def _text(report: Report, containers: Sequence[ContainerInfo], processes: Sequence[ProcessInfo]) -> int:
    """Bytes of the characters of the report's strings (its ids and timestamps aside)."""
    info = report.host_info
    host: list[str] = [report.hostname]
    if info is not None:
        host += [info.hostname, info.os, info.platform, info.kernel_version, info.architecture, *info.ip_addresses]
        if info.cpu_info is not None:
            host.append(info.cpu_info.model)
        host += [t for d in info.disks for t in (d.mount_point, d.device, d.fs_type)]
    total = _width(host)
    total += _width([t for p in processes for t in (p.name, p.cmdline, p.user, p.status, p.cgroup)])
    total += _width([t for c in containers for t in (
        c.name, c.image, c.image_id, c.status, c.command, *c.labels, *c.labels.values(), *c.env, *c.env.values(),
        *c.env_names, *(n.name for n in c.networks), *(n.ip_address for n in c.networks),
        *(p.host_ip for p in c.ports))])
    if report.network_info is not None:
        total += _width([t for c in report.network_info.connections for t in (c.local_address, c.remote_address, c.state)])
        total += _width([t for i in report.network_info.interfaces for t in (i.name, *i.addresses)])
    return total
