// A node's health for colouring: healthy, warning, critical or unknown, from
// its status and, for a healthy node, how hot its CPU runs and, for a host,
// whether its container engine answers (engine.js). Pure.

import { engineDown } from "./engine.js";

// Hosts (up/down/stale), containers (Docker states) and processes (psutil's
// states: a sleeping process is a normal one).
const BY_STATUS = {
  up: "healthy", running: "healthy", healthy: "healthy", active: "healthy",
  sleeping: "healthy", idle: "healthy", "disk-sleep": "healthy", waking: "healthy", parked: "healthy",
  paused: "warning", restarting: "warning", created: "warning", stale: "warning", degraded: "warning",
  exited: "warning", stopped: "warning", "tracing-stop": "warning",
  dead: "critical", down: "critical", removing: "critical", unhealthy: "critical", zombie: "critical",
};

// As app.css's colour variables (which say why these).
export const COLOURS = {
  healthy: "#0f7b6c", warning: "#a57310", critical: "#ce2d2d", unknown: "#768195",
};

const RANK = { critical: 0, warning: 1, unknown: 2, healthy: 3 }; // worst first

export function health(node) {
  const metrics = node.metrics || {};
  let base = BY_STATUS[node.status] || "unknown";
  const statuses = node.type === "process_group" && node.metadata && node.metadata.statuses;
  if (statuses) {
    // A group of processes is coloured by its worst process, not by the sum of
    // its CPU: eight workers at 20 % of a core each are not a process at 160 %.
    for (const status of Object.keys(statuses)) {
      const of = BY_STATUS[status] || "unknown";
      if (RANK[of] < RANK[base]) base = of;
    }
  }
  if (base !== "healthy") return base;
  const cpu = statuses ? metrics.cpu_percent_max : metrics.cpu_usage ?? metrics.cpu_percent;
  if (typeof cpu === "number" && cpu >= 90) return "critical";
  if (typeof cpu === "number" && cpu >= 75) return "warning";
  if (engineDown(node)) return "warning"; // up, but its containers are only as last known
  return base;
}
