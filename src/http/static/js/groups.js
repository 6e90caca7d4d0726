// What the processes view shows. Grouped by name (the default), the server's
// `processes-by-name` view, as Weave Scope's "application processes" showed
// them: the processes of one name on one host are one node (how many, their
// CPU and memory summed), kernel threads left out; each is labelled with its
// count here. Ungrouped, the server's `processes` view, each process on its
// own, and kernel threads hidden unless asked for. Kept current from the
// Topology's changes: a diff touches only the nodes it names. Pure: no DOM, no I/O.

const GROUP = "process_group";

// The server's view for the processes view with these options.
export function processesView(group) {
  return group ? "processes-by-name" : "processes";
}

// Group ids say what they are: "process_group:<hostname>:<name>", the host
// name's "%" and ":" written "%25" and "%3A" (as the server's
// process_group_id writes them: host "a:b"'s "w" is not host "a"'s "b:w"),
// the name's "%" and ">" written "%25" and "%3E" (no node id holds an edge id's "->").
export function groupId(hostname, name) {
  const host = hostname.includes("%") || hostname.includes(":")
    ? hostname.replaceAll("%", "%25").replaceAll(":", "%3A") : hostname;
  const part = name.includes("%") || name.includes(">") ? name.replaceAll("%", "%25").replaceAll(">", "%3E") : name;
  return `${GROUP}:${host}:${part}`;
}

export function isGroupId(id) {
  return typeof id === "string" && id.startsWith(`${GROUP}:`);
}

export function isKernelThread(node) {
  return Boolean(node.metadata && node.metadata.kernel_thread === true);
}

// The ids of a group's processes (from its pids: they are on its host).
export function memberIds(group) {
  const host = (group.host || "").replace(/^host:/, "");
  return ((group.metadata && group.metadata.pids) || []).map((pid) => `process:${host}:${pid}`);
}

// The id of the group among `nodes` (what the grouped view shows) that holds
// process `id`, if one does.
export function groupShowing(nodes, id) {
  if (!id.startsWith("process:")) return undefined;
  const at = id.lastIndexOf(":");
  const prefix = groupId(id.slice("process:".length, at), ""), pid = Number(id.slice(at + 1));
  for (const [key, node] of nodes) {
    if (key.startsWith(prefix) && node.metadata && (node.metadata.pids || []).includes(pid)) return key;
  }
  return undefined;
}

export class ProcessesShown {
  // kernel: show kernel threads (of the ungrouped view; the grouped one has none).
  constructor({ kernel = false } = {}) {
    this.kernel = kernel;
    this.reset(new Map());
  }

  // Everything again from the topology's `nodes` (after a reset).
  reset(nodes) {
    this.nodes = new Map(); // what the view shows: id -> a process node, or a group labelled with its count
    this.kernelThreads = new Set(); // ids of the kernel threads in the topology, shown or not
    for (const [id, node] of nodes) this.#place(id, node);
  }

  // Applies one change as Topology.apply returned it ({added, updated,
  // removed}); `nodes` are the topology's nodes after it.
  apply(change, nodes) {
    if (change.kind === "reset") return this.reset(nodes);
    for (const id of change.removed) {
      this.nodes.delete(id);
      this.kernelThreads.delete(id);
    }
    for (const id of [...change.added, ...change.updated]) {
      this.nodes.delete(id);
      this.kernelThreads.delete(id);
      this.#place(id, nodes.get(id));
    }
  }

  #place(id, node) {
    if (!node) return;
    if (node.type === GROUP) {
      const count = (node.metadata && node.metadata.pids && node.metadata.pids.length) || 0;
      this.nodes.set(id, count > 1 ? { ...node, label: `${node.label} (${count})` } : node);
      return;
    }
    if (isKernelThread(node)) {
      this.kernelThreads.add(id);
      if (!this.kernel) return;
    }
    this.nodes.set(id, node);
  }
}
