// A host whose container engine does not answer its probe (the server's
// metadata.container_engine "unreachable"), and the containers it keeps
// meanwhile as the engine last listed them: status "unknown", their last
// state in metadata.last_state, no metrics, no controls. How the table, the
// graph and the details say so. Pure, and cheap: called for every node a
// render shows, it makes a string only for the nodes it concerns.

// Whether `node` is a host whose container engine does not answer.
export function engineDown(node) {
  return node.type === "host" && Boolean(node.metadata) && node.metadata.container_engine === "unreachable";
}

// Whether `node` is a container shown as last known (its host's engine does not answer).
export function stale(node) {
  return node.type === "container" && node.status === "unknown" && Boolean(node.metadata)
    && node.metadata.last_state !== undefined && node.metadata.last_state !== null;
}

// The status as the page writes it (not yet `visible`): "unknown (last:
// running)" for a stale container, "up, container engine unreachable" for
// its host, else the status itself.
export function statusText(node) {
  if (stale(node)) return `${node.status} (last: ${node.metadata.last_state})`;
  if (engineDown(node)) return `${node.status}, container engine unreachable`;
  return node.status;
}

// The status with why, for a tooltip: "up, container engine unreachable:
// <problem>" for a host whose engine does not answer (the listing has the
// problem: no details need be asked for), else `statusText`.
export function statusTitle(node) {
  const problem = engineDown(node) ? node.metadata.container_engine_problem : "";
  return problem ? `${statusText(node)}: ${problem}` : statusText(node);
}

// A few words the graph draws under a node's name: "" for most. Hosts only:
// a stale container is drawn as a ring (the legend's "unknown"), and a line
// under each of a host's containers ran into its neighbours.
export function statusNote(node) {
  return engineDown(node) ? "engine unreachable" : "";
}

// Why a stale container has no metrics and no controls.
export const STALE_REASON = "The host's container engine does not answer; shown as last known.";
export const NO_CONTROLS_STALE = "No controls while the host's container engine does not answer: nothing could reach this container.";
