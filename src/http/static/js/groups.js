// What the processes view shows, as Weave Scope's "application processes" did:
// the processes of one name on one host are one node (how many, their CPU and
// memory summed), and kernel threads are left out. Each can be turned off.
// Kept current from the Topology's changes: a diff rebuilds only the groups of
// the processes it names. Pure: no DOM, no I/O.

import { health } from "./health.js";
import { splitId } from "./model.js";

const PREFIX = "processes:";
const RANK = { critical: 0, warning: 1, unknown: 2, healthy: 3 }; // worst first

// Group ids say what they are and cannot be a server's: "processes:<hostname>:<name>".
export function isGroupId(id) {
  return typeof id === "string" && id.startsWith(PREFIX);
}

export function isKernelThread(node) {
  return Boolean(node.metadata && node.metadata.kernel_thread === true);
}

export class ProcessGroups {
  // group: processes of one name on one host as one node; kernel: show kernel threads.
  constructor({ group = true, kernel = false } = {}) {
    this.group = group;
    this.kernel = kernel;
    this.reset(new Map());
  }

  // Everything again from the topology's `nodes` (after a reset).
  reset(nodes) {
    this.nodes = new Map(); // what the view shows: id -> a process node, or a group node
    this.kernelThreads = new Set(); // ids of the kernel threads in the topology, shown or not
    // Grouping: a record per group {id, members: Map(process id -> node), shownAs}
    // (shownAs: its only process's id, or its own), found by host, then name
    // (two short look-ups rather than building every process's group id), by
    // group id, and by each process's id.
    this.byHost = new Map();
    this.groups = new Map();
    this.groupOf = new Map();
    this.projected = null; // the edges between shown nodes, until they change
    for (const [id, node] of nodes) this.#place(id, node);
    for (const group of this.groups.values()) this.#show(group);
  }

  // Applies one change as Topology.apply returned it ({added, updated,
  // removed, edges}); `nodes` are the topology's nodes after it.
  apply(change, nodes) {
    if (change.kind === "reset") return this.reset(nodes);
    const touched = new Set();
    for (const id of change.removed) this.#remove(id, touched);
    for (const id of [...change.added, ...change.updated]) {
      this.#remove(id, touched);
      this.#place(id, nodes.get(id), touched);
    }
    for (const group of touched) this.#show(group);
    if (change.edges) this.projected = null;
  }

  // The id under which process `id` is shown (its group's, or its own), if it is.
  shownOf(id) {
    const group = this.groupOf.get(id);
    if (group !== undefined) return group.shownAs;
    return this.nodes.has(id) ? id : undefined;
  }

  // The process nodes of group `id` (none for an id that is not a group's).
  membersOf(id) {
    const group = this.groups.get(id);
    return group ? [...group.members.values()] : [];
  }

  // The topology's `edges` (a Map) between what is shown: each end moved to its
  // group, one edge per pair of shown nodes with the connections summed, none
  // within a group. Ungrouped, the edges as they are (the graph draws none to a
  // hidden node: it has no place).
  edges(edges) {
    if (!this.group) return edges;
    if (this.projected && this.projected.from === edges) return this.projected.edges;
    const pairs = new Map(); // source -> target -> edge
    const projected = [];
    for (const edge of edges.values()) {
      const source = this.shownOf(edge.source), target = this.shownOf(edge.target);
      if (source === undefined || target === undefined || source === target) continue;
      let from = pairs.get(source);
      if (!from) pairs.set(source, (from = new Map()));
      const known = from.get(target);
      if (known) {
        known.connections += edge.connections || 1;
        continue;
      }
      const made = { source, target, connections: edge.connections || 1 }; // all the graph reads of an edge
      from.set(target, made);
      projected.push(made);
    }
    this.projected = { from: edges, edges: projected };
    return projected;
  }

  #place(id, node, touched) {
    if (!node) return;
    if (isKernelThread(node)) {
      this.kernelThreads.add(id);
      if (!this.kernel) return;
    }
    if (!this.group || node.type !== "process") {
      this.nodes.set(id, node);
      return;
    }
    const host = node.host || "";
    const name = (node.metadata && node.metadata.name) || node.label;
    let names = this.byHost.get(host);
    if (!names) this.byHost.set(host, (names = new Map()));
    let group = names.get(name);
    if (!group) {
      group = { id: `${PREFIX}${splitId(host)[1]}:${name}`, host, name, members: new Map(), shownAs: undefined };
      names.set(name, group);
      this.groups.set(group.id, group);
    }
    group.members.set(id, node);
    this.groupOf.set(id, group);
    if (touched) touched.add(group);
  }

  #remove(id, touched) {
    this.kernelThreads.delete(id);
    const group = this.groupOf.get(id);
    if (group === undefined) {
      this.nodes.delete(id); // ungrouped, or not a process
      return;
    }
    this.groupOf.delete(id);
    group.members.delete(id);
    touched.add(group);
  }

  // Shows `group` as its members now are: its only process itself, a group
  // node for more, nothing when none is left.
  #show(group) {
    const before = group.shownAs;
    if (before !== undefined) this.nodes.delete(before);
    if (group.members.size === 0) {
      this.groups.delete(group.id);
      this.byHost.get(group.host).delete(group.name);
      group.shownAs = undefined;
      if (before !== undefined) this.projected = null;
      return;
    }
    const node = group.members.size === 1 ? group.members.values().next().value : groupNode(group.id, group.members);
    this.nodes.set(node.id, node);
    group.shownAs = node.id;
    if (before !== node.id) this.projected = null; // an end of some edges is shown under another id
  }
}

function groupNode(key, members) {
  let cpu = 0, memory = 0, worst = RANK.healthy + 1, status = "", lastSeen = "", first = null;
  const ids = [];
  for (const [id, node] of members) {
    first = first || node;
    ids.push(id);
    const metrics = node.metrics || {};
    if (typeof metrics.cpu_percent === "number") cpu += metrics.cpu_percent;
    if (typeof metrics.memory_mb === "number") memory += metrics.memory_mb;
    const rank = RANK[health(node)];
    if (rank < worst) {
      worst = rank;
      status = node.status;
    }
    if (node.last_seen > lastSeen) lastSeen = node.last_seen;
  }
  const name = (first.metadata && first.metadata.name) || first.label;
  const metadata = { name, processes: members.size };
  if (isKernelThread(first)) metadata.kernel_thread = true; // the same name: kernel threads all, or none
  return {
    id: key, type: "process", label: `${name} (${members.size})`, parent: first.host, host: first.host,
    agent_id: first.agent_id, status, last_seen: lastSeen, metadata, metrics: { cpu_percent: cpu, memory_mb: memory },
    members: ids,
    // Coloured by its worst process, not by the sum of its CPU: eight workers
    // at 20 % of a core each are not a process at 160 %.
    health: Object.keys(RANK)[worst],
  };
}
