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
    this.nodes = new Map(); // what the view shows: id -> a process node, or a group node
    this.kernelThreads = new Set(); // ids of the kernel threads in the topology, shown or not
    this.keyOf = new Map(); // grouping: process id -> its group id (shown processes only)
    this.members = new Map(); // grouping: group id -> Map(process id -> node)
    this.shownAs = new Map(); // grouping: group id -> the id it is shown under (its only process's, or its own)
    this.shown = new Map(); // grouping: process id -> the id it is shown under (one look-up per edge end)
    this.prefixes = new Map(); // host id -> "processes:<hostname>:" (made once, not once per process)
    this.projected = null; // the edges between shown nodes, until they change
  }

  // Everything again from the topology's `nodes` (after a reset).
  reset(nodes) {
    this.nodes = new Map();
    this.kernelThreads = new Set();
    this.keyOf = new Map();
    this.members = new Map();
    this.shownAs = new Map();
    this.shown = new Map();
    this.projected = null;
    for (const [id, node] of nodes) this.#place(id, node);
    if (this.group) for (const key of this.members.keys()) this.#show(key);
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
    for (const key of touched) this.#show(key);
    if (change.edges) this.projected = null;
  }

  // The id under which process `id` is shown (its group's, or its own), if it is.
  shownOf(id) {
    if (!this.group) return this.nodes.has(id) ? id : undefined;
    return this.shown.get(id) ?? (this.nodes.has(id) ? id : undefined);
  }

  // The process nodes of group `id` (none for an id that is not a group's).
  membersOf(id) {
    const members = this.members.get(id);
    return members ? [...members.values()] : [];
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
      const made = { id: `${source}->${target}`, source, target, type: edge.type, connections: edge.connections || 1 };
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
    let prefix = this.prefixes.get(node.host);
    if (prefix === undefined) this.prefixes.set(node.host, (prefix = `${PREFIX}${node.host ? splitId(node.host)[1] : ""}:`));
    const key = prefix + ((node.metadata && node.metadata.name) || node.label);
    this.keyOf.set(id, key);
    this.shown.set(id, key); // until #show knows it is the only one of its name
    let members = this.members.get(key);
    if (!members) this.members.set(key, (members = new Map()));
    members.set(id, node);
    if (touched) touched.add(key);
  }

  #remove(id, touched) {
    this.kernelThreads.delete(id);
    if (!this.group) {
      this.nodes.delete(id);
      return;
    }
    const key = this.keyOf.get(id);
    if (key === undefined) {
      this.nodes.delete(id); // a node that is not a process
      return;
    }
    this.keyOf.delete(id);
    this.shown.delete(id);
    this.members.get(key).delete(id);
    touched.add(key);
  }

  // Shows group `key` as its members now are: its only process itself, a
  // group node for more, nothing when none is left.
  #show(key) {
    const members = this.members.get(key);
    const before = this.shownAs.get(key);
    if (before !== undefined) this.nodes.delete(before);
    if (!members || members.size === 0) {
      this.members.delete(key);
      this.shownAs.delete(key);
      if (before !== undefined) this.projected = null;
      return;
    }
    const node = members.size === 1 ? members.values().next().value : groupNode(key, members);
    this.nodes.set(node.id, node);
    this.shownAs.set(key, node.id);
    if (members.size === 1) this.shown.set(node.id, node.id);
    else if (before !== key) for (const id of members.keys()) this.shown.set(id, key); // was one process, or none
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
