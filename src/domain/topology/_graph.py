"""The live topology: merges partitions, resolves connections, publishes versions.

Owned by one actor; pure and synchronous. The cost of applying a report is
proportional to that report (its partition) plus the connections whose far end
it changed, never to the size of the whole graph:

* nodes are merged per id from the partitions that describe them (usually one);
* connections are resolved against an index of everyone's listening sockets and
  addresses, and re-resolved only when an endpoint they looked up changes;
* each view's edges are reference counts of the connections projected onto it,
  kept up to date as connections come and go;
* publishing copies the per-kind node maps (pointers only) and derives the diff
  from what was touched since the last version.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, MutableMapping
from operator import attrgetter, is_
from typing import Any, cast

import attrs

from trioscope.domain.clocks import newer, report_time
from trioscope.domain.steps import Steps, at_once, sorted_in_steps
from trioscope.wire import POD_UID, Report, is_loopback

from ._controls import controls_for
from ._edge_cache import EdgeCache
from ._engine_outage import server_keeps
from ._endpoints import Claims, Readers
from ._model import VIEWS, Edge, Node, NodeKind, Reps, View, group_names, reps
from ._partition import (
    EndpointKey, OutgoingConnection, Partition, build_partition, refreshed, restricted, scoped_address,
)
from ._process_groups import group_node_ordered, group_of, regrouped
from ._shards import LiveShards, edge_shard, host_shard, live_edges, live_processes
from ._snapshot import TopologyDiff, TopologySnapshot, kind_of

EdgeKey = tuple[str, str]
Projection = tuple[int, str, str]
"""(index of the view in ``VIEWS``, source node, target node)."""
_GROUP = VIEWS.index(View.PROCESSES_BY_NAME)
_CONTAINER = VIEWS.index(View.CONTAINERS)
_BY_ID = attrgetter("id")
_METADATA = attrgetter("metadata")
_LAST_SEEN = attrgetter("last_seen")
PUBLISH_STEP = 4096
"""Nodes or edges ``publishing`` compares between two yields (~5-10 ms)."""


@attrs.frozen
class Expired:
    """What ``expire`` removed."""

    agents: tuple[str, ...]
    nodes: int
    partitions: Mapping[str, Partition] = attrs.field(factory=dict)
    """The removed agents' partitions as they were (what their nodes were),
    by agent id."""


class TopologyGraph:
    """Mutable topology state. Call ``apply`` per report, ``expire`` per cleanup
    tick, and ``publish`` to get an immutable snapshot plus the diff."""

    def __init__(self, now: float = 0.0, edge_cache: EdgeCache | None = None) -> None:
        self.edge_cache = edge_cache if edge_cache is not None else EdgeCache()
        """Shared by the versions it publishes: their edges' encodings."""
        self.partitions: dict[str, Partition] = {}
        self._nodes: dict[str, Node] = {}
        self._processes = live_processes()
        """The processes of ``_by_kind``, by host: a version copies only the hosts written since the last."""
        self._by_kind: dict[NodeKind, MutableMapping[str, Node]] = {
            k: self._processes if k is NodeKind.PROCESS else {} for k in NodeKind}
        self._reps: dict[str, Reps] = {}
        self._sources: dict[str, tuple[str, ...]] = {}
        """Node id -> the agents whose partitions describe it (nearly always one);
        their versions of it are in their partitions."""
        self._children: dict[str, set[str]] = defaultdict(set)
        self._shared: Counter[str] = Counter()
        """Agent -> how many of the nodes it describes other agents describe too
        (their versions merged): an agent with none is refreshed in bulk."""

        # Endpoints everyone exposes: key -> {agent: node}. More than one claimant
        # (e.g. 172.17.0.2 on every Docker host) makes the key ambiguous.
        self._listener_claims: Claims[EndpointKey] = Claims()
        self._address_claims: Claims[str] = Claims()
        # Who looked up which key or address, to re-resolve them when it changes.
        self._key_readers: Readers[EndpointKey] = Readers()
        self._address_readers: Readers[str] = Readers()
        # ... and which nodes' representatives their connections' targets used.
        self._rep_readers: Readers[str] = Readers()
        self._reads: dict[str, tuple[set[EndpointKey], set[str], set[str]]] = {}
        self._outgoing_sets: dict[str, tuple[tuple[OutgoingConnection, ...], frozenset[OutgoingConnection]]] = {}
        """Agent -> its outgoing connections and their set (``_outgoing_of``)."""
        self._to_reproject: set[str] = set()
        # Projected connections: agent -> how many of its connections project
        # onto each (view, source, target).
        self._projected: dict[str, Counter[Projection]] = {}
        self._edge_counts: dict[View, dict[EdgeKey, int]] = {v: {} for v in View}
        self._edges: dict[View, LiveShards[EdgeKey, Edge]] = {v: live_edges() for v in View}
        """Each view's edges, in shards by source host: a version copies only the shards written since the last."""

        # Pods and services: group -> agent -> member containers, and the reverse,
        # so that a change to a container (from any agent) rebuilds its groups.
        self._members: dict[str, dict[str, tuple[str, ...]]] = defaultdict(dict)
        self._groups_of: dict[str, Counter[str]] = defaultdict(Counter)
        self._stale_groups: set[str] = set()
        # Process groups: group -> its processes (from their representatives).
        self._processes_of: dict[str, set[str]] = {}
        # ... and the members (ids in order, their metadata objects) its node
        # was last built from in full: a group whose members are those, with
        # that metadata, is rebuilt from its node (``regrouped``).
        self._group_frames: dict[str, tuple[tuple[str, ...], tuple[Mapping[str, Any] | None, ...]]] = {}

        self.version = 0
        self._published = TopologySnapshot.empty(now)
        self._dirty_nodes: set[str] = set()
        self._refreshed: dict[str, float] = {}
        """Agents refreshed in bulk since the last version (``_refresh``), with
        the report time of their partition in that version: their nodes are
        not in ``_dirty_nodes``, and ``publish`` takes them as a whole."""
        self._rebuilt: set[str] = set()
        """Agents whose partition was replaced in full since the last version:
        their nodes may be new to it, so they go through ``_dirty_nodes``."""
        self._dirty_edges: dict[View, set[EdgeKey]] = {v: set() for v in View}

    @property
    def nodes(self) -> Mapping[str, Node]:
        """Every node of the live graph by id (settled first: see ``settle``)."""
        self.settle()
        return self._nodes

    # ---- applying reports -----------------------------------------------------------

    def apply(self, report: Report, received_at: float, partition: Partition | None = None,
              shape: bytes | None = None, *, enrolled: bool = False,
              allowed: frozenset[str] | None = None, scope: str | None = None,
              seen: float | None = None) -> bool:
        """Merge ``report``. Returns False (and changes nothing) if this agent has
        already sent a newer one. ``seen``: the report's time on the server's
        clock (``ReportTimes.seen``, by its agent's clock offset; None:
        ``report_time`` with none), which orders an agent's reports and
        stamps its nodes. ``partition``: the report's
        ``build_partition(report, received_at, enrolled=enrolled)``, if the
        caller built it already (off the event loop, for a large report);
        ``shape``: its ``report_shape``, if the caller found it; ``enrolled``:
        an enrolled agent signed it (its containers offer controls);
        ``allowed``: the controls that agent runs (``allowed_actions``; None:
        all), which its containers offer alone; ``scope``: the ``node_scope``
        of that agent's tenant, which its node ids carry (None: none).

        Pods, services and process groups are brought up to date by ``settle``
        (which ``publish`` calls), once for all the reports merged in between:
        a service spans hosts, and rebuilding it per report cost a share of
        the merge that grew with the number of hosts."""
        current = self.partitions.get(report.agent_id)
        if seen is None:
            seen = report_time(report, received_at)
        if current is not None and not newer(seen, received_at, current.report_time) and current.scope == scope:
            # (Under another scope its agent id is another tenant's, or no
            # longer an enrolled probe's: what the old owner reported goes,
            # however its time compares.)
            return False
        # A report whose container engine does not answer, and which does not
        # say its last listing, keeps ``current``'s containers: built with it,
        # not where it was received.
        if partition is None or partition.scope != scope or server_keeps(report):
            partition = build_partition(report, received_at, current, shape, enrolled=enrolled, allowed=allowed,
                                        scope=scope, seen=seen)
        else:
            if partition.report_time != seen:
                # Built where it was received (off the event loop: a large
                # report), where its probe's clock offset was not known: its
                # nodes copied with ``seen`` (of its own shape, so no build:
                # building it again here put the large report's cost back on
                # this loop, at every report of a probe whose clock is off).
                partition = refreshed(partition, report, received_at, seen)
            if partition.allowed != allowed:  # built before its agent's controls were known
                partition = restricted(partition, allowed)
        self._replace(report.agent_id, current, partition)
        return True

    def sources(self, node_id: str) -> tuple[str, ...]:
        """The agents whose current reports describe ``node_id``."""
        return self._sources.get(node_id, ())

    def controllers(self, node_id: str) -> tuple[str, ...]:
        """The agents whose version of ``node_id`` offers controls (an enrolled
        agent's engine listed the container), in ``sources`` order: a control
        goes to one of them, never to one that only inferred the container
        from its processes, nor to an unsigned report's."""
        return tuple(a for a in self._sources.get(node_id, ())
                     if "controls" in self.partitions[a].nodes[node_id].metadata)

    def remove_agent(self, agent_id: str) -> int:
        """Forget everything ``agent_id`` reported; returns the nodes it described."""
        current = self.partitions.get(agent_id)
        if current is None:
            return 0
        self._replace(agent_id, current, None)
        return len(current.nodes)

    def expire(self, now: float, threshold: float, keep: Collection[str] = ()) -> Expired:
        """Remove partitions not refreshed within ``threshold`` seconds of ``now``
        (by the time the server received them, so agents' clocks do not matter),
        but those of the agents in ``keep`` (a newer report of theirs waits to be
        merged: removed now, their nodes would come back with it)."""
        return at_once(self.expiring(now, threshold, keep))

    def stale(self, now: float, threshold: float, keep: Collection[str] = (),
              moved: Mapping[str, float] | None = None) -> list[str]:
        """The agents ``expire`` would remove, in partition order; removes nothing.
        ``moved``: seconds the server's clock was set by since an agent's
        partition was received (``WallSteps``), added to its receipt: a clock
        set forward made every agent stale at once, set back kept a silent
        one for as long. One pass over the partitions (~0.5 ms at 10,000 agents)."""
        horizon = now - threshold
        if not moved:
            return [a for a, p in self.partitions.items() if p.received_at < horizon and a not in keep]
        return [a for a, p in self.partitions.items()
                if p.received_at + moved.get(a, 0.0) < horizon and a not in keep]

    def expiring(self, now: float, threshold: float, keep: Collection[str] = (),
                 moved: Mapping[str, float] | None = None) -> Steps[Expired]:
        """``expire`` in steps: yields after each agent removed (~1 ms each; a
        thousand gone silent together, a network cut off, were a second at once)."""
        stale = self.stale(now, threshold, keep, moved)
        partitions = {agent: self.partitions[agent] for agent in stale}
        removed = 0
        for agent in stale:
            removed += self.remove_agent(agent)
            yield
        return Expired(tuple(stale), removed, partitions)

    def _replace(self, agent: str, old: Partition | None, new: Partition | None) -> None:
        if old is not None and new is not None and old.same_structure(new):
            self._refresh(agent, new)
        else:
            self._rebuild(agent, old, new)

    def _rebuild(self, agent: str, old: Partition | None, new: Partition | None) -> None:
        """Replace ``agent``'s partition by one that may place nodes elsewhere,
        expose or open other endpoints, or join other groups."""
        self._rebuilt.add(agent)
        self._outgoing_sets.pop(agent, None)
        if self._refreshed.pop(agent, None) is not None and old is not None:
            # Its nodes changed since the last version without being marked:
            # whatever replaces them is compared with that version.
            self._dirty_nodes.update(old.nodes)
        if new is None:
            del self.partitions[agent]
        else:
            self.partitions[agent] = new
        old_nodes = old.nodes if old is not None else {}
        new_nodes = new.nodes if new is not None else {}
        for node_id in old_nodes.keys() - new_nodes.keys():
            self._contribute(node_id, agent, present=False)
        self._update_membership(agent, old, new)
        for node_id in new_nodes:
            self._contribute(node_id, agent, present=True)
        self._update_endpoints(agent, old, new)
        self._to_reproject.add(agent)
        self._reproject_queued()

    def _refresh(self, agent: str, new: Partition) -> None:
        """Merge a partition of the same structure as the agent's current one
        (``Partition.same_structure``): its nodes replace their versions and
        nothing else moves, no edge, endpoint or membership (the common report:
        new metrics, the same processes and connections).

        An agent that describes no node with others (nearly all) is refreshed
        in bulk: its nodes stored by dict updates, their groups marked stale
        by set operations, and the agent, not each node, marked for
        ``publish`` (a per-node loop through each step was most of the cost
        of a report whose metrics alone changed)."""
        old = self.partitions[agent]
        self.partitions[agent] = new
        if self._shared.get(agent):
            self._refresh_nodes(new)
            return
        nodes = new.nodes
        self._nodes.update(nodes)
        by_kind = self._by_kind
        process = NodeKind.PROCESS
        # Its processes are all in its host's shard (their ids are made from its host name).
        shard = self._processes.writable(host_shard(new.host.partition(":")[2])) if process in new.kinds else {}
        for node_id, node in nodes.items():
            kind = node.kind
            if kind is process:
                shard[node_id] = node
            else:
                by_kind[kind][node_id] = node
        if agent in self._rebuilt:  # its nodes may be new since the last version: compared one by one
            self._dirty_nodes.update(nodes)
        else:
            self._refreshed.setdefault(agent, old.report_time)
        # Its process groups and pods are rebuilt now, while their members are
        # in the CPU's caches (at publish, after a batch of a hundred hosts,
        # reading them again cost as much as the rebuild); services, which
        # span hosts, once per version (``settle``).
        groups: set[str] = set(filter(None, [node_reps[_GROUP] for node_reps in new.reps.values()]))
        for of_container in filter(None, map(self._groups_of.get, nodes)):  # a solo node's reps are its partition's
            groups.update(of_container)
        stale = self._stale_groups
        for group_id in sorted(groups):
            if group_id.startswith("service:"):
                stale.add(group_id)
            else:
                stale.discard(group_id)
                self._rebuild_group(group_id)

    def _refresh_nodes(self, new: Partition) -> None:
        """``_refresh`` node by node, for an agent some of whose nodes others describe too."""
        sources, nodes, by_kind, dirty, node_reps = self._sources, self._nodes, self._by_kind, self._dirty_nodes, self._reps
        stale, groups_of = self._stale_groups, self._groups_of
        for node_id, node in new.nodes.items():
            if len(sources[node_id]) > 1:
                self._refresh_node(node_id)  # merged with other agents' versions: may move
                continue
            # _set_node for a node whose place (parent, representatives) stays:
            # whether it changed at all, publish sees.
            nodes[node_id] = by_kind[node.kind][node_id] = node
            dirty.add(node_id)
            groups = groups_of.get(node_id)
            if groups:
                stale.update(groups)
            group = node_reps[node_id][_GROUP]
            if group is not None and group != node_id:
                stale.add(group)
        self._reproject_queued()

    def _reproject_queued(self) -> None:
        # Re-projecting changes no node, so one pass reaches a fixed point.
        for reader in sorted(self._to_reproject):
            self._reproject(reader)
        self._to_reproject.clear()

    def settle(self, limit: int | None = None) -> bool:
        """Rebuild the pods, services and process groups whose members changed
        since the last call: at most ``limit`` of them (None: all). Returns
        whether none is left. ``publish`` and ``details`` settle first; call
        it in slices to bound the time one call takes."""
        while self._stale_groups:
            ordered = sorted(self._stale_groups)
            if limit is not None:
                if limit <= 0:
                    return False
                ordered = ordered[:limit]
                limit -= len(ordered)
            self._stale_groups.difference_update(ordered)
            for group_id in ordered:
                self._rebuild_group(group_id)
        self._reproject_queued()  # a group that moved (none is any connection's end, but all the same)
        return True

    def _contribute(self, node_id: str, agent: str, present: bool) -> None:
        agents = self._sources.get(node_id, ())
        if present and not agents:
            # Nearly every node has one source: its agent's one tuple, shared
            # (a tuple each cost 48 bytes a node).
            agents = self.partitions[agent].solo
        elif present and agent not in agents:
            agents = (*agents, agent)
        elif not present:
            agents = tuple(a for a in agents if a != agent)
        before = self._sources.get(node_id, ())
        if len(agents) > 1 or len(before) > 1:
            # Which of them counts a connection they all report (``_reported_before``)
            # may change with who describes the node, or with what one reports.
            self._to_reproject.update(agents)
            self._to_reproject.update(before)
        if agents != before:
            shared = self._shared
            if len(before) > 1:
                for other in before:
                    shared[other] -= 1
                    if not shared[other]:
                        del shared[other]
            if len(agents) > 1:
                for other in agents:
                    shared[other] += 1
        if agents:
            self._sources[node_id] = agents
        else:
            self._sources.pop(node_id, None)
        self._refresh_node(node_id)

    def _refresh_node(self, node_id: str) -> None:
        agents = self._sources.get(node_id)
        if not agents:
            self._set_reps(node_id, None)
            self._set_node(node_id, None)
            return
        if len(agents) == 1:
            agent = agents[0]
            merged = self.partitions[agent].nodes[node_id]
            node_reps = self.partitions[agent].reps[node_id]
        else:
            partitions = self.partitions
            merged, agent = merge_nodes({a: partitions[a].nodes[node_id] for a in agents},
                                        {a: partitions[a].allowed for a in agents},
                                        signed={a for a in agents if partitions[a].enrolled})
            node_reps = self.partitions[agent].reps[node_id]
            group = group_of(merged)
            if node_reps[_GROUP] != group:  # grouped as merged (by the newest name), as shown
                node_reps = (*node_reps[:_GROUP], group, *node_reps[_GROUP + 1:])
        self._set_reps(node_id, node_reps)
        self._set_node(node_id, merged)

    def _set_node(self, node_id: str, node: Node | None) -> None:
        current = self._nodes.get(node_id)
        if current is node or (current is not None and node is not None and current == node):
            return
        if current is not None and current.parent:
            siblings = self._children[current.parent]
            siblings.discard(node_id)
            if not siblings:  # containers come and go for ever: keep no empty sets
                del self._children[current.parent]
        if node is None:
            del self._nodes[node_id]
            del self._by_kind[current.kind][node_id]  # type: ignore[union-attr]  # current is a Node: both None returned above
        else:
            self._nodes[node_id] = node
            self._by_kind[node.kind][node_id] = node
            if node.parent:
                self._children[node.parent].add(node_id)
        self._dirty_nodes.add(node_id)
        groups = self._groups_of.get(node_id)
        if groups:
            self._stale_groups.update(groups)
        node_reps = self._reps.get(node_id)
        group = node_reps[_GROUP] if node_reps is not None else None
        if group is not None and group != node_id:
            self._stale_groups.add(group)  # a process: its group's sums change

    # ---- pods and services ------------------------------------------------------------

    def _update_membership(self, agent: str, old: Partition | None, new: Partition | None) -> None:
        before = {**old.pods, **old.services} if old is not None else {}
        after = {**new.pods, **new.services} if new is not None else {}
        for group_id in before.keys() | after.keys():
            was, now = before.get(group_id, ()), after.get(group_id, ())
            if was == now:
                continue
            for container in was:
                counts = self._groups_of[container]
                counts[group_id] -= 1
                if counts[group_id] <= 0:
                    del counts[group_id]
                if not counts:
                    del self._groups_of[container]
            for container in now:
                self._groups_of[container][group_id] += 1
            if now:
                self._members[group_id][agent] = now
            else:
                self._members[group_id].pop(agent, None)
            self._group_frames.pop(group_id, None)  # other members: built again in full
            self._stale_groups.add(group_id)

    def _rebuild_group(self, group_id: str) -> None:
        kind = kind_of(group_id)
        if self._regroup(kind, group_id):
            return
        if kind is NodeKind.PROCESS_GROUP:
            self._rebuild_process_group(group_id)
            return
        by_agent = self._members.get(group_id, {})
        members = sorted({c for ids in by_agent.values() for c in ids})
        containers = [self._nodes[c] for c in members if c in self._nodes]
        if not containers:
            self._members.pop(group_id, None)
            self._group_frames.pop(group_id, None)
            self._set_group(group_id, None)
            return
        namespace, name = group_names(group_id)
        hosts = sorted({c.host for c in containers if c.host})
        running = [c for c in containers if c.status == "running"]
        metadata: dict[str, Any] = {
            "namespace": namespace,
            "name": name,
            "containers": [c.id for c in containers],
            "hosts": hosts,
        }
        if kind is NodeKind.POD:
            uid = containers[0].metadata.get("labels", {}).get(POD_UID)
            if uid:
                metadata["uid"] = uid
        host = hosts[0] if kind is NodeKind.POD and hosts else None
        node = Node(
            id=group_id, kind=kind, label=name, parent=host, host=host,
            agent_id=containers[0].agent_id,
            status="running" if running else containers[0].status,
            last_seen=max(c.last_seen for c in containers),
            metadata=metadata,
            metrics=_container_sums(containers),
        )
        # Members absent from the graph are in the frame with no metadata: one
        # that comes back is no longer what the node was built from.
        self._group_frames[group_id] = (tuple(members), tuple(self._nodes[c].metadata if c in self._nodes else None
                                                            for c in members))
        self._set_group(group_id, node)

    def _regroup(self, kind: NodeKind, group_id: str) -> bool:
        """Rebuild a group whose members are those its node was last built from
        in full (its frame: a change of members drops it), each with the very
        metadata it had then (``Node.seen`` shares it; a new status, name or
        host comes with new metadata): only their metrics and times changed,
        so only the sums and the newest member are found again, and the
        node's place stays. Returns False (nothing done) for any other group."""
        nodes = self._nodes
        frame = self._group_frames.get(group_id)
        previous = nodes.get(group_id)
        if frame is None or previous is None:
            return False
        members = list(map(nodes.get, frame[0]))
        # all(): a node is always true, and ``None in`` would call each one's __eq__.
        if not all(members) or not all(map(is_, map(_METADATA, members), frame[1])):
            return False
        found = cast("list[Node]", members)  # no None: all() above
        if kind is NodeKind.PROCESS_GROUP:
            node = regrouped(previous, found)
        else:
            # What the full build gives: members in id order, the first one's
            # agent, status and labels (its metadata, hence its node, as then).
            node = previous.seen(max(map(_LAST_SEEN, found)), _container_sums(found))
        # _set_node for a node whose place (host, parent, id) stays and that
        # is no member of any group; whether it changed, publish sees.
        nodes[group_id] = self._by_kind[kind][group_id] = node
        self._dirty_nodes.add(group_id)
        return True

    def _rebuild_process_group(self, group_id: str) -> None:
        nodes = self._nodes
        members = sorted((nodes[p] for p in self._processes_of.get(group_id, ()) if p in nodes), key=_BY_ID)
        node = group_node_ordered(group_id, members)
        if node is None:
            self._group_frames.pop(group_id, None)
        else:
            self._group_frames[group_id] = (tuple(m.id for m in members), tuple(m.metadata for m in members))
        self._set_node(group_id, node)
        self._set_reps(group_id, reps(host=node.host or "", process_group=group_id) if node is not None else None)

    def _set_group(self, group_id: str, node: Node | None) -> None:
        self._set_node(group_id, node)
        if node is None:
            self._set_reps(group_id, None)
        elif node.kind is NodeKind.POD:
            self._set_reps(group_id, reps(host=node.host or "", pod=group_id))
        else:
            self._set_reps(group_id, reps(host="", service=group_id))

    def _set_reps(self, node_id: str, node_reps: Reps | None) -> None:
        """Where a node sits changed: connections projected through it move."""
        before = self._reps.get(node_id)
        if before == node_reps:
            return
        if node_reps is None:
            del self._reps[node_id]
        else:
            self._reps[node_id] = node_reps
        was = before[_GROUP] if before is not None else None
        now = node_reps[_GROUP] if node_reps is not None else None
        if was != now and node_id not in (was, now):  # a process joins or leaves a group
            self._move_process(node_id, was, now)
        # Connections through this node: those aimed at it (recorded readers)
        # and those leaving it, which only the agents describing it report.
        self._to_reproject.update(self._rep_readers.of(node_id))
        self._to_reproject.update(self._sources.get(node_id, ()))

    def _move_process(self, process: str, was: str | None, now: str | None) -> None:
        for group in (was, now):  # other members: built again in full
            self._group_frames.pop(group, None)  # type: ignore[arg-type]  # None is never a key
        if was is not None:
            members = self._processes_of[was]
            members.discard(process)
            if not members:
                del self._processes_of[was]
            self._stale_groups.add(was)
        if now is not None:
            self._processes_of.setdefault(now, set()).add(process)
            self._stale_groups.add(now)

    # ---- endpoints and connection resolution -----------------------------------------------

    def _update_endpoints(self, agent: str, old: Partition | None, new: Partition | None) -> None:
        """Update the endpoints ``agent`` claims; connections that looked one up
        are queued for re-projection."""
        before = (old.listeners, old.addresses) if old is not None else ({}, {})
        after = (new.listeners, new.addresses) if new is not None else ({}, {})
        if before == after:
            return
        # One loop for both kinds of key, typed loosely: the checker would mix them.
        kinds: tuple[tuple[Claims[Any], Readers[Any], Mapping[Any, str], Mapping[Any, str]], ...] = (
            (self._listener_claims, self._key_readers, before[0], after[0]),
            (self._address_claims, self._address_readers, before[1], after[1]),
        )
        for claims_of, readers_of, was_map, now_map in kinds:
            for key in was_map.keys() | now_map.keys():
                was, now = was_map.get(key), now_map.get(key)
                if was == now:
                    continue
                if now is None:
                    claims_of.remove(key, agent)
                else:
                    claims_of.set(key, agent, now)
                self._to_reproject.update(readers_of.of(key))

    def _resolve(self, partition: Partition, connection: OutgoingConnection,
                 keys: set[EndpointKey], addresses: set[str]) -> str | None:
        source, protocol, address, port = connection
        if is_loopback(address):
            # In the source's network namespace: its own, its container's, or the host's.
            network = partition.networks.get(source)
            if network is None:
                container = partition.reps[source][_CONTAINER]
                network = partition.networks.get(container) if container is not None else None
            return partition.local_listeners.get((protocol, port, network))
        address = scoped_address(address, partition.scope)
        key = (protocol, address, port)
        keys.add(key)
        addresses.add(address)
        own = partition.listeners.get(key)  # container to container on this host's bridge
        if own is not None:
            return own
        claimed = self._listener_claims.sole(key)
        if claimed is not None:
            return claimed
        own = partition.addresses.get(address)
        if own is not None:
            return own
        return self._address_claims.sole(address)

    def _reproject(self, agent: str) -> None:
        """Resolve ``agent``'s connections again and apply the difference in edge
        counts: a report whose connections did not change touches no edge."""
        partition = self.partitions.get(agent)
        counts: Counter[Projection] = Counter()
        keys: set[EndpointKey] = set()
        addresses: set[str] = set()
        nodes: set[str] = set()
        if partition is not None:
            node_reps = self._reps
            # An agent describing a node with others (two probes on one host)
            # may report the same connections as they do: each counted once.
            shared = self._shared.get(agent)
            for connection in partition.outgoing:
                if shared and self._reported_before(agent, connection):
                    continue
                target = self._resolve(partition, connection, keys, addresses)
                if target is None:
                    continue
                nodes.add(target)  # a source is read by its own agents: see _set_reps
                source_reps, target_reps = node_reps.get(connection[0]), node_reps.get(target)
                if source_reps is None or target_reps is None:
                    continue
                for index, (a, b) in enumerate(zip(source_reps, target_reps, strict=True)):
                    if a is not None and b is not None and a != b:
                        counts[(index, a, b)] += 1
        previous = self._projected.get(agent, Counter())
        if counts != previous:
            for projection in previous.keys() | counts.keys():
                delta = counts.get(projection, 0) - previous.get(projection, 0)
                if delta:
                    index, a, b = projection
                    self._count_edge(VIEWS[index], (a, b), delta)
        if counts:
            self._projected[agent] = counts
        else:
            self._projected.pop(agent, None)
        self._update_reads(agent, keys, addresses, nodes)

    def _reported_before(self, agent: str, connection: OutgoingConnection) -> bool:
        """Whether another agent describing the connection's source, of a
        smaller id, reports it too (and counts it: the one of the smallest id
        does, whatever the order the reports came in)."""
        for other in self._sources.get(connection[0], ()):
            if other < agent and connection in self._outgoing_of(other):
                return True
        return False

    def _outgoing_of(self, agent: str) -> frozenset[OutgoingConnection]:
        """``agent``'s outgoing connections as a set, kept while its partition
        keeps them (asked for agents that share nodes only)."""
        outgoing = self.partitions[agent].outgoing
        cached = self._outgoing_sets.get(agent)
        if cached is None or cached[0] is not outgoing:
            cached = self._outgoing_sets[agent] = (outgoing, frozenset(outgoing))
        return cached[1]

    def _update_reads(self, agent: str, keys: set[EndpointKey], addresses: set[str], nodes: set[str]) -> None:
        old_keys, old_addresses, old_nodes = self._reads.pop(agent, (set(), set(), set()))
        for key in old_keys - keys:
            self._key_readers.discard(key, agent)
        for key in keys - old_keys:
            self._key_readers.add(key, agent)
        for address in old_addresses - addresses:
            self._address_readers.discard(address, agent)
        for address in addresses - old_addresses:
            self._address_readers.add(address, agent)
        for node_id in old_nodes - nodes:
            self._rep_readers.discard(node_id, agent)
        for node_id in nodes - old_nodes:
            self._rep_readers.add(node_id, agent)
        if keys or addresses or nodes:
            self._reads[agent] = (keys, addresses, nodes)

    def _count_edge(self, view: View, key: EdgeKey, delta: int) -> None:
        counts = self._edge_counts[view]
        count = counts.get(key, 0) + delta
        if count > 0:
            counts[key] = count
        else:
            counts.pop(key, None)
        self._dirty_edges[view].add(key)

    # ---- publishing -----------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return bool(self._dirty_nodes or self._refreshed or self._stale_groups) or any(self._dirty_edges.values())

    @property
    def current(self) -> TopologySnapshot:
        """The last published snapshot (may lag behind ``apply``; see ``publish``)."""
        return self._published

    def publish(self, now: float) -> tuple[TopologySnapshot, TopologyDiff | None]:
        """A new snapshot if anything changed since the last one, with the diff;
        else the current snapshot and None."""
        return at_once(self.publishing(now))

    def publishing(self, now: float, step: int = PUBLISH_STEP) -> Steps[tuple[TopologySnapshot, TopologyDiff | None]]:
        """``publish`` in steps: yields after each ``step`` nodes or edges
        compared, so that a caller can let others run between them (a version
        of a thousand new hosts compares ~130,000 nodes); returns what
        ``publish`` returns. Nothing else may use the graph until it returned,
        and it must be run to its end: what it has taken from the graph's
        changes before a yield is in no later version if it is dropped there."""
        previous = self._published
        self.settle()
        if not self.dirty:
            return previous, None
        budget = step
        nodes_added: dict[str, Node] = {}
        nodes_updated: dict[str, Node] = {}
        nodes_removed: list[str] = []
        dirty_kinds: set[NodeKind] = set()
        live = self._nodes
        published = {kind: previous.nodes_of(kind) for kind in NodeKind}
        dirty = self._dirty_nodes
        for agent, published_time in self._refreshed.items():
            partition = self.partitions[agent]
            if self._shared.get(agent) or partition.report_time == published_time:
                dirty.update(partition.nodes)  # merged since, or seen at the same time: compared one by one
            else:
                # Each in the last version (no rebuild since), and seen later than there.
                nodes_updated.update(partition.nodes)
                dirty_kinds.update(partition.kinds)
        self._refreshed.clear()
        self._rebuilt.clear()
        for node_id in dirty:
            budget -= 1
            if not budget:
                yield
                budget = step
            after = live.get(node_id)
            kind = after.kind if after is not None else kind_of(node_id)
            before = published[kind].get(node_id)
            if before is after:
                continue
            if after is None:
                nodes_removed.append(node_id)
            elif before is None:
                nodes_added[node_id] = after
            # Seen again: not equal (the whole comparison is the costly part).
            elif before.last_seen == after.last_seen and before == after:
                continue
            else:
                nodes_updated[node_id] = after
            dirty_kinds.add(kind)

        edges_added: dict[str, Edge] = {}
        edges_updated: dict[str, Edge] = {}
        edges_removed: list[str] = []
        dirty_views: set[View] = set()
        for view, keys in self._dirty_edges.items():
            edges = self._edges[view]
            counts = self._edge_counts[view]
            for key in keys:
                budget -= 1
                if not budget:
                    yield
                    budget = step
                before_edge = edges.get(key)
                count = counts.get(key, 0)
                if count == 0:
                    if before_edge is not None:
                        del edges[key]
                        edges_removed.append(before_edge.id)
                        dirty_views.add(view)
                elif before_edge is None or before_edge.connections != count:
                    edge = Edge(key[0], key[1], count)
                    edges.writable(edge_shard(key))[key] = edge
                    (edges_added if before_edge is None else edges_updated)[edge.id] = edge
                    dirty_views.add(view)
            keys.clear()
        self._dirty_nodes.clear()

        if not (dirty_kinds or dirty_views):
            return previous, None
        # Sorted for a diff that reads the same on every replica; in steps: a
        # thousand agents expired together are ~130,000 nodes and ~550,000
        # edges removed (~0.3 s of sorting at once).
        nodes_removed = yield from sorted_in_steps(nodes_removed)
        edges_removed = yield from sorted_in_steps(edges_removed)
        self.version += 1
        nodes = {k: (_frozen(self._by_kind[k]) if k in dirty_kinds else previous.nodes_of(k)) for k in NodeKind}
        edges_by_view = {v: (self._edges[v].published() if v in dirty_views else previous.edges_of(v)) for v in View}
        snapshot = TopologySnapshot(self.version, now, nodes, edges_by_view, edge_cache=self.edge_cache)
        diff = TopologyDiff(
            version=self.version,
            previous_version=previous.version,
            nodes_added=nodes_added,
            nodes_updated=nodes_updated,
            nodes_removed=tuple(nodes_removed),
            edges_added=edges_added,
            edges_updated=edges_updated,
            edges_removed=tuple(edges_removed),
        )
        self._published = snapshot
        return snapshot, diff

    # ---- point queries on the live graph ------------------------------------------------

    def details(self, node_id: str) -> dict[str, Any] | None:
        """A node with its parents, children and connected nodes (for the UI's
        details panel)."""
        self.settle()
        node = self._nodes.get(node_id)
        if node is None:
            return None
        parents: list[dict[str, Any]] = []
        parent = node.parent
        while parent is not None and parent in self._nodes and len(parents) < 8:
            parents.append(_brief(self._nodes[parent]))
            parent = self._nodes[parent].parent
        node_reps = self._reps.get(node_id)
        groups = []
        if node_reps is not None:
            for group in (node_reps[VIEWS.index(View.PODS)], node_reps[VIEWS.index(View.SERVICES)]):
                if group and group != node_id and group in self._nodes:
                    groups.append(_brief(self._nodes[group]))
        children = sorted((_brief(self._nodes[c]) for c in self._children.get(node_id, ()) if c in self._nodes),
                          key=lambda b: b["id"])
        connected: dict[str, dict[str, Any]] = {}
        view = next(v for v in View if v.kind is node.kind)
        # A scan rather than an adjacency index: details are asked for one node
        # at a time, an index would cost memory and work on every edge change.
        for (source, target), count in self._edge_counts[view].items():
            if source == node_id:
                other, direction = target, "outbound"
            elif target == node_id:
                other, direction = source, "inbound"
            else:
                continue
            if other not in self._nodes:
                continue
            entry = connected.setdefault(other, {**_brief(self._nodes[other]), "directions": set(), "connections": 0})
            entry["directions"].add(direction)
            entry["connections"] += count
        return {
            "node": node.details(),
            "parents": parents,
            "groups": groups,
            "children": children,
            "connected": [{**c, "directions": sorted(c["directions"])} for _, c in sorted(connected.items())],
        }

    def agents_of(self, node_id: str) -> list[str]:
        """Agents whose reports describe ``node_id`` (for a pod or service: the
        agents reporting its containers)."""
        if node_id in self._members:
            return sorted(self._members[node_id])
        return sorted(self._sources.get(node_id, ()))

    def without(self, agent_id: str) -> TopologyGraph:
        """A new graph built from every partition but ``agent_id``'s (to recover
        from a merge that failed half-way)."""
        graph = TopologyGraph(edge_cache=self.edge_cache)
        # Continue the version sequence: the next publish diffs against what
        # clients last saw, including what disappeared with the failed agent.
        graph.version, graph._published = self.version, self._published
        graph._edges = {view: edges.copy() for view, edges in self._edges.items()}
        graph._dirty_nodes.update(self._nodes)
        for view, counts in self._edge_counts.items():
            graph._dirty_edges[view].update(counts)
        for agent, partition in self.partitions.items():
            if agent != agent_id:
                graph._replace(agent, None, partition)
        return graph


def _frozen(nodes: MutableMapping[str, Node]) -> Mapping[str, Node]:
    """What a version holds of the live ``nodes`` of one kind: a copy, or for
    the processes a view that shares the shards not written since."""
    return nodes.published() if isinstance(nodes, LiveShards) else dict(nodes)


def _container_sums(containers: list[Node]) -> dict[str, float]:
    """A pod's or service's metrics: its containers' (in id order), summed;
    no CPU or memory while a running member has no statistics in its report
    (a probe leaves out those its engine did not give within its budget,
    routinely past some 40 containers): counted as 0, the sum fell by that
    member's share (to 0 for a pod of one) and the history recorded the dip.
    A member that is not running uses nothing."""
    if any("cpu_percent" not in c.metrics and c.status == "running" for c in containers):
        return {"containers": float(len(containers))}
    return {
        "cpu_percent": sum(c.metrics.get("cpu_percent", 0.0) for c in containers),
        "memory_mb": sum(c.metrics.get("memory_mb", 0.0) for c in containers),
        "containers": float(len(containers)),
    }


def _brief(node: Node) -> dict[str, Any]:
    return {"id": node.id, "type": node.kind.value, "label": node.label, "agent_id": node.agent_id}


def merge_nodes(versions: dict[str, Node],
                allowed: Mapping[str, frozenset[str] | None] | None = None, *,
                signed: Collection[str] | None = None) -> tuple[Node, str]:
    """Merge several agents' versions of one node: newest report wins, key by key
    for metadata and metrics (ties broken by agent id, so the result does not
    depend on arrival order). Returns the merged node and the agent whose
    version is newest (whose parent, place in the views and ``agent_id`` the
    node has).

    Some versions are left out whatever their times, so that the node is not
    the newest report's in turn (its name, state, parent and agent):

    * ``signed``: the agents whose reports an enrolled agent signed
      (``Partition.enrolled``; None: none). A node a signed report describes
      is the signed agents': unsigned (anonymous) reports' versions of it are
      left out, or any probe could rename, re-state, re-parent or take over
      an enrolled agent's container or host (its controls refused for the
      state it claimed, the host shown as the anonymous probe's). Unsigned
      versions alone merge as before.
    * A container that some agent's engine lists is that agent's (or those
      agents'): the versions of agents that only inferred it from its
      processes' cgroups (``metadata.inferred``: named by its short id,
      assumed running) are left out. After the unsigned ones: a signed
      agent's inferred container is not an unsigned report's to name.

    ``allowed``: each agent's ``Partition.allowed`` (absent: all controls); a
    merged container offers the controls its state allows that one of the
    agents whose version offers controls runs."""
    if len(versions) > 1:
        if signed:
            trusted = {a: node for a, node in versions.items() if a in signed}
            if trusted and len(trusted) < len(versions):
                versions = trusted
        listed = {a: node for a, node in versions.items() if not node.metadata.get("inferred")}
        if listed and len(listed) < len(versions):
            versions = listed
        if len(versions) == 1:
            [(agent, only)] = versions.items()
            return only, agent
    ordered = sorted(versions.items(), key=lambda item: (item[1].last_seen, item[0]))
    metadata: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    for _agent, node in ordered:
        metadata.update(node.metadata)
        metrics.update(node.metrics)
    if "controls" in metadata:
        # Only signed reports' containers have controls, and with one among
        # them the unsigned versions are left out (above): the state is a
        # signed report's. The controls are those it allows, as the control
        # endpoint checks them against the merged state; of those, the ones
        # an agent that offers controls runs (it picks that agent).
        runs: set[str] | None = set()
        for a, node in ordered:
            if "controls" in node.metadata and runs is not None:
                permitted = allowed.get(a) if allowed is not None else None
                runs = None if permitted is None else runs | permitted
        metadata["controls"] = controls_for(metadata.get("state", ""), None if runs is None else frozenset(runs))
    agent, newest = ordered[-1]
    return newest.evolve(metadata=metadata, metrics=metrics), agent
