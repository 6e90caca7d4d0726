// The topology as the live stream describes it: the server's nodes and edges of
// one view, kept current by applying `topology_update` messages. Pure: no I/O.

export class Topology {
  constructor() {
    this.nodes = new Map();
    this.edges = new Map();
    this.version = null;
    this.view = null;
    this.edgeVersion = 0; // changes whenever an edge comes, changes or goes
    // Container node id -> name, from its processes' metadata: the processes
    // view shows no container nodes but groups by them.
    this.names = new Map();
    // Nodes removed since `names` was last rebuilt: once they outnumber the
    // nodes left, it is rebuilt from those (names of gone containers dropped;
    // amortised, a removal costs O(1)).
    this.removedSinceNames = 0;
  }

  // Applies one `topology_update` payload. Returns what changed:
  // {kind: "reset"|"diff"|"gap"|"stale", added, updated, removed (node ids),
  // edges (how many changed)}. "gap": the payload does not follow our version,
  // nothing was applied and the caller asks the server for a reset; "stale": a
  // version we have already, ignored.
  apply(payload) {
    if (payload.reset) {
      const before = this.nodes;
      // for-in rather than Object.entries: a view of 100,000 nodes would make
      // as many arrays, only to throw them away.
      const nodes = payload.nodes || {}, edges = payload.edges || {};
      this.nodes = new Map();
      for (const id in nodes) this.nodes.set(id, nodes[id]);
      this.edges = new Map();
      for (const id in edges) this.edges.set(id, edges[id]);
      this.version = payload.version;
      this.view = payload.view;
      this.#relearn();
      const added = [], updated = [], removed = [];
      for (const id of this.nodes.keys()) (before.has(id) ? updated : added).push(id);
      for (const id of before.keys()) if (!this.nodes.has(id)) removed.push(id);
      this.edgeVersion += 1;
      return { kind: "reset", added, updated, removed, edges: this.edges.size };
    }
    if (this.version !== null && payload.version <= this.version) {
      return { kind: "stale", added: [], updated: [], removed: [], edges: 0 }; // a repeat: already applied
    }
    if (this.version === null || payload.previous_version !== this.version) {
      return { kind: "gap", added: [], updated: [], removed: [], edges: 0 };
    }
    const add = payload.add || {}, update = payload.update || {}, remove = payload.remove || {};
    const added = [], updated = [], removed = [];
    for (const [id, node] of [...Object.entries(add.nodes || {}), ...Object.entries(update.nodes || {})]) {
      (this.nodes.has(id) ? updated : added).push(id);
      this.nodes.set(id, node);
      this.#learn(node);
    }
    for (const id of remove.nodes || []) {
      if (this.nodes.delete(id)) removed.push(id);
    }
    this.removedSinceNames += removed.length;
    if (this.removedSinceNames > this.nodes.size) this.#relearn();
    let edges = 0;
    for (const [id, edge] of Object.entries({ ...(add.edges || {}), ...(update.edges || {}) })) {
      this.edges.set(id, edge);
      edges += 1;
    }
    for (const id of remove.edges || []) edges += this.edges.delete(id) ? 1 : 0;
    if (edges) this.edgeVersion += 1;
    this.version = payload.version;
    return { kind: "diff", added, updated, removed, edges };
  }

  #relearn() {
    this.names = new Map();
    this.removedSinceNames = 0;
    for (const node of this.nodes.values()) this.#learn(node);
  }

  #learn(node) {
    const name = node.metadata && node.metadata.container_name;
    if (name && node.parent) this.names.set(node.parent, name);
  }

  // The names of the metrics the nodes carry, CPU and memory first.
  metricNames() {
    const names = new Set();
    let seen = 0;
    for (const node of this.nodes.values()) {
      for (const name of Object.keys(node.metrics || {})) names.add(name);
      if (++seen > 200) break; // the nodes of a view share their metrics; a sample is enough
    }
    const rank = (n) => (/cpu/.test(n) ? 0 : /mem/.test(n) ? 1 : 2);
    return [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  }
}

// "host:web-1" (or "host:web-1@3f2a…", an enrolled probe's) -> "web-1"; "container:96aac9…" -> its name
// in `names` (a Topology's), else "container 96aac9fc5351".
export function labelOfId(id, nodes, names) {
  const node = nodes && nodes.get(id);
  if (node) return node.label;
  const name = names && names.get(id);
  if (name) return name;
  const [kind, scoped = ""] = splitId(id);
  // An enrolled probe's tenant scope (last, or before a pid or a group's name) is no part of a name;
  // a name's own % and @ come escaped.
  const rest = unescaped(scoped.replace(/@[0-9a-f]{12}(?=:|$)/, ""));
  if (kind === "container" && /^[0-9a-f]{64}$/.test(rest)) return `container ${rest.slice(0, 12)}`;
  return rest || id;
}

function unescaped(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text; // a lone % that is no escape (a process group of a server before its names were escaped)
  }
}

export function splitId(id) {
  const at = id.indexOf(":");
  return at < 0 ? [id, ""] : [id.slice(0, at), id.slice(at + 1)];
}
