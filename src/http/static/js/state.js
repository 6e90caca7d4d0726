// What the user is looking at, kept in the URL so that a view can be shared:
// ?view=containers&mode=table&q=web&label=app%3Dweb&metric=cpu_percent%3E%3D50&size=cpu_percent&node=…
// The processes view's options are there too: group=0 (every process on its
// own rather than grouped by name) and kthreads=1 (kernel threads shown).
// Pure: parse and format only; main.js owns reading and writing location.

export const VIEWS = ["hosts", "containers", "processes", "pods", "services", "all"];
export const TYPES = ["host", "container", "process", "pod", "service"];
const MODES = ["graph", "table"];
const LIMIT = 400; // the longest text a parameter may bring in

export const DEFAULTS = Object.freeze({
  view: "hosts", mode: "graph", q: "", type: "", labels: [], metric: "", min: null,
  size: "", sort: "label", dir: "asc", node: "", group: true, kthreads: false,
});

function text(params, name) {
  return (params.get(name) || "").slice(0, LIMIT);
}

export function parseState(search) {
  const params = new URLSearchParams(search);
  const view = text(params, "view");
  const mode = text(params, "mode");
  const type = text(params, "type");
  const state = {
    ...DEFAULTS,
    view: VIEWS.includes(view) ? view : DEFAULTS.view,
    mode: MODES.includes(mode) ? mode : DEFAULTS.mode,
    q: text(params, "q"),
    type: TYPES.includes(type) ? type : "",
    labels: params.getAll("label").slice(0, 16).map((l) => l.slice(0, LIMIT)).filter(Boolean),
    size: text(params, "size"),
    sort: text(params, "sort") || DEFAULTS.sort,
    dir: text(params, "dir") === "desc" ? "desc" : "asc",
    node: text(params, "node"),
    group: text(params, "group") !== "0",
    kthreads: text(params, "kthreads") === "1",
  };
  // "cpu_percent>=50" (1e+21 and 1e-7 as String(number) writes them), or a metric chosen with no minimum yet.
  const metric = /^([\w.-]{1,80})(?:>=(-?[\d.]+(?:e[+-]?\d+)?))?$/i.exec(text(params, "metric"));
  if (metric && (metric[2] === undefined || Number.isFinite(Number(metric[2])))) {
    state.metric = metric[1];
    state.min = metric[2] === undefined ? null : Number(metric[2]);
  }
  return state;
}

// The parameters of `search` that name a view, display or type there is no
// such thing as (parseState shows the default instead): [{name, value}].
export function unknownParams(search) {
  const params = new URLSearchParams(search);
  const known = { view: VIEWS, mode: MODES, type: TYPES };
  return Object.entries(known).flatMap(([name, values]) => {
    const value = text(params, name);
    return value && !values.includes(value) ? [{ name, value }] : [];
  });
}

export function formatState(state) {
  const params = new URLSearchParams();
  for (const name of ["view", "mode", "q", "type", "size", "sort", "dir", "node"]) {
    if (state[name] && state[name] !== DEFAULTS[name]) params.set(name, state[name]);
  }
  for (const label of state.labels) params.append("label", label);
  if (!state.group) params.set("group", "0");
  if (state.kthreads) params.set("kthreads", "1");
  if (state.metric) params.set("metric", state.min === null ? state.metric : `${state.metric}>=${state.min}`);
  const query = params.toString();
  return query ? `?${query}` : "";
}

// "app=web, tier" -> ["app=web", "tier"]
export function parseLabels(textValue) {
  return textValue.split(",").map((l) => l.trim()).filter(Boolean).slice(0, 16);
}

// The node kind a view shows (null for "all").
export function kindOf(view) {
  return view === "all" ? null : TYPES[VIEWS.indexOf(view)] || null;
}

// The view in which nodes of `kind` are shown (a kind it does not know: All).
export function viewOf(kind) {
  return VIEWS[TYPES.indexOf(kind)] || "all";
}
