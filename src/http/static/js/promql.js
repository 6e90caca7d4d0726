// The metrics API's series as the UI names, selects and draws them. Pure:
// label sets in, PromQL text, option labels and sparkline values out.

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

// Labels every series of one node has alike (its probe, its deployment):
// they say nothing about which of its series one is.
export const NODE_LABELS = new Set(["agent_id", "hostname", "tenant", "deployment_hash"]);

// A label value as a PromQL string literal.
export function quote(value) {
  return `"${String(value).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
}

// The selector of the series whose labels are `labels` (`__name__`
// included) and of no other: `absent` names the labels other series have and
// this one lacks, matched as empty (Prometheus' "label not set").
export function exactSelector(labels, absent = []) {
  const name = labels.__name__ || "";
  const matchers = Object.keys(labels).filter((k) => k !== "__name__").sort()
    .map((k) => `${k}=${quote(labels[k])}`);
  for (const k of [...new Set(absent)].sort()) if (!(k in labels)) matchers.push(`${k}=""`);
  if (!METRIC_NAME.test(name)) matchers.unshift(`__name__=${quote(name)}`);
  return `${METRIC_NAME.test(name) ? name : ""}{${matchers.join(",")}}`;
}

// What tells a series apart from the node's other series: its name and its own
// labels (not the node's). The same key on another node is "the same series there".
export function seriesKey(labels) {
  return JSON.stringify(Object.keys(labels).filter((k) => !NODE_LABELS.has(k)).sort().map((k) => [k, labels[k]]));
}

// How the picker names a series: `name{label="value", …}` without the node's labels.
export function seriesLabel(labels) {
  const own = Object.keys(labels).filter((k) => k !== "__name__" && !NODE_LABELS.has(k)).sort()
    .map((k) => `${k}=${quote(labels[k])}`);
  return `${labels.__name__ || ""}${own.length ? `{${own.join(", ")}}` : ""}`;
}

// Series in the order the picker lists them: by label, then by key.
export function sortSeries(list) {
  return [...list].sort((a, b) => seriesLabel(a).localeCompare(seriesLabel(b)) || seriesKey(a).localeCompare(seriesKey(b)));
}

// Whether two label sets are the same series.
export function sameLabels(a, b) {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}

// A query_range result's `values` ([[unix seconds, "text"], …]) on the grid
// start, start + step, …, end: a number per step, null where the series had none.
export function valuesOnGrid(values, start, end, step) {
  const count = Math.floor((end - start) / step + 1e-9) + 1;
  const grid = new Array(Math.max(0, count)).fill(null);
  for (const [time, text] of values || []) {
    const index = Math.round((Number(time) - start) / step);
    const value = Number(text);
    if (index >= 0 && index < grid.length && Number.isFinite(value)) grid[index] = value;
  }
  return grid;
}
