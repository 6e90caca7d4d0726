// A node's health for colouring: healthy, warning, critical or unknown, from
// its status and, for a healthy node, how hot its CPU runs. Pure.

// Hosts (up/down/stale), containers (Docker states) and processes (psutil's
// states: a sleeping process is a normal one).
const BY_STATUS = {
  up: "healthy", running: "healthy", healthy: "healthy", active: "healthy",
  sleeping: "healthy", idle: "healthy", "disk-sleep": "healthy", waking: "healthy", parked: "healthy",
  paused: "warning", restarting: "warning", created: "warning", stale: "warning", degraded: "warning",
  exited: "warning", stopped: "warning", "tracing-stop": "warning",
  dead: "critical", down: "critical", removing: "critical", unhealthy: "critical", zombie: "critical",
};

export const COLOURS = {
  healthy: "#2e9d5b", warning: "#d99a16", critical: "#d64545", unknown: "#9aa3b2",
};

export function health(node) {
  if (node.health) return node.health; // a group of processes: its worst one's (groups.js)
  const base = BY_STATUS[node.status] || "unknown";
  if (base !== "healthy") return base;
  const metrics = node.metrics || {};
  const cpu = metrics.cpu_usage ?? metrics.cpu_percent;
  if (typeof cpu === "number" && cpu >= 90) return "critical";
  if (typeof cpu === "number" && cpu >= 75) return "warning";
  return base;
}
