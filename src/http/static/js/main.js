// The page: signs the user in, follows the live topology of the chosen view,
// and keeps the graph, the table, the filters, the details panel, the stats
// bar and the URL in step. Each part lives in its own module; this one wires.

import { ApiError, api, events, setToken, socketUrl, token, tokenProtocols } from "./api.js";
import { AlertList } from "./alerts.js";
import { Controls } from "./controls.js";
import { DetailsPanel } from "./details.js";
import { returnFocusAfter, say } from "./dom.js";
import { emptyAdvice } from "./empty.js";
import { compileFilter } from "./filter.js";
import { clock, metricLabel, visible, visibleShort } from "./format.js";
import { GraphView } from "./graph.js";
import { ProcessesShown, groupShowing, isGroupId, processesView } from "./groups.js";
import { health } from "./health.js";
import { Layout } from "./layout.js";
import { Topology, splitId } from "./model.js";
import { Pacer, Throttle } from "./pacer.js";
import { ReconnectingSocket } from "./socket.js";
import { VIEWS, formatState, kindOf, parseLabels, parseState, unknownParams, viewOf } from "./state.js";
import { MAX_METRIC_COLUMNS, TableView } from "./table.js";

const STATS_EVERY_MS = 5000;
const REFUSED_AFTER = 3; // failed connection attempts in a row before the page says the server may be refusing
const REFUSED = "the server is not accepting the connection: down, busy or limiting this address";
const COUNTS_QUIET_MS = 700; // the counts are announced once the filters have stood still this long
const FILTER_KEYS = ["q", "labels", "metric", "min", "type", "group", "kthreads"]; // what the counts answer to
const everything = () => true; // the filter when none is set (one function: the graph keeps what it worked out with it)
const $ = (id) => document.getElementById(id);

let state = parseState(location.search);
let model = new Topology();
let shownGroup = null; // the group of processes whose details are shown, as they were
let processes = null; // in the processes view, what it shows (groups labelled with their count, kernel threads hidden): groups.js
const layout = new Layout();
let live = null;
let principal = null;
let lastUpdate = null;
let statsTimer = null;
let liveView = null; // the view the live socket follows (asked in its URL, or by a subscribe)
let resyncing = false; // a resync was asked: diffs are pointless until the reset comes
let awaitingReset = false; // a new connection's first reset has not come: the view shown is from before it
let countsAsked = false; // the user changed the filters: the next render's counts are announced
let countsTimer = null; // debounces that announcement
let typing = null; // the search box's debounce
let expiry = null; // signs the user out when the token expires
let viewNumber = 0; // counts the views followed: a new one's table is sorted afresh
let serverNodes = null; // nodes in all views, from the stats: 0 means no probe has reported yet
let serverByType = {}; // the same by node type (an empty view says which others have nodes)
let serverStats = null; // the last stats: an empty page says from them how to get nodes (empty.js)
let serverVersion = null; // the topology's version at the last stats poll
let behind = false; // the page had not reached, by this poll, the version the server had at the last one
let connection = { kind: "closed", info: {} }; // the live socket's state (socket.js)
let countdown = null; // ticks "reconnecting in N s" down
let announced = null; // the connection's state as last read out (showConnection)
const picked = new Set(); // the last PICKED_KEPT nodes the user picked from the page (not from a URL), oldest first
const PICKED_KEPT = 200;
const renderer = new Pacer(render); // renders at most once a frame, and no more often than a render takes
let lastMatched = null; // the ids the filters let through at the last render (null: no filter)
// With "size by" set, most nodes' sizes change at each version (cpu): redrawing
// 116,000 nodes for each locked the page (1.2-2.5 s tasks back to back).
const SIZES_EVERY_MS = 1000;
const sizes = new Throttle(invalidate, SIZES_EVERY_MS);
let matchedVersion = 0;
let tableTouched = null; // ids of the nodes changes named since the table's last render (null: any may have changed)
let renderedVersion = null; // the model's version at the last render // changes whenever those do: what the graph worked out from them is worked out again

const graph = new GraphView($("canvas"), { onSelect: (id) => select(id) });
const table = new TableView($("table"), {
  onSelect: (id, { keyboard = false } = {}) => {
    select(id);
    // The focus stays on the row: what Enter did is said (the details open elsewhere on the page).
    if (keyboard) say($("announcer"), `Details of ${visible(shownNodes().get(id)?.label ?? id)} opened`);
  },
  onSort: (key) => {
    state = { ...state, dir: state.sort === key && state.dir === "asc" ? "desc" : "asc", sort: key };
    saveState();
    invalidate();
  },
});
const alerts = new AlertList($("alerts"), { announce: (text) => say($("alerts-announcer"), text) });
const controls = new Controls({
  confirm: ask, output: showOutput, onEvent: (message) => alerts.event(message), onConnect: () => alerts.refresh(),
  announce: (text) => say($("commands-announcer"), text),
});
const details = new DetailsPanel($("details"), {
  onNavigate: (id) => navigate(id),
  onClose: () => closeDetails(),
  controls,
  wasShown: (id) => model.nodes.has(id) || picked.has(id),
});
// A live log stops when the page goes (its cancel is sent with keepalive).
window.addEventListener("pagehide", () => controls.leave());

// ---- state and URL ---------------------------------------------------------------------

function saveState() {
  const query = formatState(state);
  if (query !== location.search) history.replaceState(null, "", `${location.pathname}${query}`);
}

function setState(changes) {
  const before = state;
  state = { ...state, ...changes };
  saveState();
  if (FILTER_KEYS.some((key) => JSON.stringify(state[key]) !== JSON.stringify(before[key]))) countsAsked = true;
  if (serverView(state) !== serverView(before)) switchView();
  else if (state.kthreads !== before.kthreads) regroup();
  if (["view", "mode", "type"].some((key) => state[key] !== before[key])) hideNotice(); // it said what these showed instead
  if (state.node !== before.node) {
    showDetails();
    if (state.mode === "table") requestAnimationFrame(() => table.reveal(shownOf(state.node)));
  }
  syncControls();
  invalidate();
}

window.addEventListener("popstate", () => {
  const before = state;
  state = parseState(location.search);
  if (serverView(state) !== serverView(before)) switchView();
  else if (state.kthreads !== before.kthreads) regroup();
  showDetails();
  syncControls();
  invalidate();
});

function select(id) {
  if (id) pick(id);
  setState({ node: id || "" });
}

// The details closed (×, Escape): the focus goes back where the node was
// picked, its row in the table, else the graph (not to <body>).
function closeDetails() {
  const id = shownOf(state.node);
  select("");
  if (state.mode === "table") table.focusNode(id);
  else $("canvas").focus();
}

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented || !state.node) return;
  if (document.querySelector("dialog[open]")) return; // Escape is the dialog's
  if (event.target.closest("textarea, select, input:not([type=checkbox])")) return; // a search box's own Escape clears it
  closeDetails();
});

// A node the page showed the user: if the server no longer knows it, it is gone (not unknown).
function pick(id) {
  picked.delete(id);
  picked.add(id);
  if (picked.size > PICKED_KEPT) picked.delete(picked.values().next().value);
}

// A link in the details panel: the node may be of another kind than the view shows.
function navigate(id) {
  pick(id);
  const kind = isGroupId(id) ? "process" : splitId(id)[0];
  const wanted = kindOf(state.view);
  setState(wanted && wanted !== kind ? { view: viewOf(kind), node: id } : { node: id });
}

// ---- the toolbar -------------------------------------------------------------------------

function buildToolbar() {
  $("views").replaceChildren(...VIEWS.map((view) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.view = view;
    button.textContent = viewTitle(view);
    button.addEventListener("click", () => setState({ view, node: "" }));
    return button;
  }));
  for (const button of document.querySelectorAll("[data-mode]")) {
    button.addEventListener("click", () => setState({ mode: button.dataset.mode }));
  }
  $("search").addEventListener("input", (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => setState({ q: event.target.value.trim() }), 120);
  });
  $("label-filter").addEventListener("change", (event) => setState({ labels: parseLabels(event.target.value) }));
  const metricChanged = () => {
    const min = $("metric-min").value;
    setState({ metric: $("metric-name").value, min: min === "" ? null : Number(min) });
  };
  $("metric-name").addEventListener("change", metricChanged);
  $("metric-min").addEventListener("change", metricChanged);
  $("type-filter").addEventListener("change", (event) => setState({ type: event.target.value }));
  $("group-by-name").addEventListener("change", (event) => {
    // A group that is no longer shown is no longer selected.
    setState({ group: event.target.checked, ...(isGroupId(state.node) ? { node: "" } : {}) });
  });
  $("show-kernel").addEventListener("change", (event) => setState({ kthreads: event.target.checked }));
  $("size-by").addEventListener("change", (event) => setState({ size: event.target.value }));
  $("clear-filters").addEventListener("click", () => {
    clearTimeout(typing);
    setState({ q: "", labels: [], metric: "", min: null, type: "", size: "" });
  });
  $("zoom-in").addEventListener("click", () => graph.zoomBy(1.4));
  $("zoom-out").addEventListener("click", () => graph.zoomBy(1 / 1.4));
  $("zoom-fit").addEventListener("click", () => graph.fit());
  $("relayout").addEventListener("click", () => {
    layout.relayout(shownNodes(), groupOf);
    graph.fit();
    invalidate();
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("notice-close").addEventListener("click", hideNotice);
}

function viewTitle(view) {
  return view[0].toUpperCase() + view.slice(1);
}

// What the URL asked for that does not exist (parseState showed the default
// instead, and the URL was made to say so): said once, under the filters.
function noticeUnknown(unknown) {
  if (!unknown.length) return;
  const instead = { view: `showing ${viewTitle(state.view)}`, mode: "showing the graph", type: "showing every type" };
  const what = { view: "view", mode: "display", type: "node type" };
  $("notice-text").textContent = unknown.map(({ name, value }) =>
    `There is no ${what[name]} "${visibleShort(value, 40)}": ${instead[name]}.`).join(" ");
  $("notice").hidden = false;
}

function hideNotice() {
  $("notice").hidden = true;
}

// Puts the state into the toolbar's inputs (after a load, a popstate or a change).
function syncControls() {
  for (const button of document.querySelectorAll("[data-view]")) {
    button.setAttribute("aria-pressed", String(button.dataset.view === state.view));
  }
  for (const button of document.querySelectorAll("[data-mode]")) {
    button.setAttribute("aria-pressed", String(button.dataset.mode === state.mode));
  }
  const search = $("search");
  if (document.activeElement !== search) search.value = state.q;
  $("label-filter").value = state.labels.join(", ");
  $("type-filter").hidden = state.view !== "all";
  $("type-filter").value = state.type;
  $("process-options").hidden = state.view !== "processes";
  $("group-by-name").checked = state.group;
  $("show-kernel").checked = state.kthreads;
  $("show-kernel").closest("label").hidden = state.group; // the grouped view has no kernel threads
  fillMetricChoices();
  $("metric-min").value = state.min === null ? "" : String(state.min);
  $("graph").hidden = state.mode !== "graph";
  $("table").hidden = state.mode !== "table";
  showTitle();
}

// The window's title (a tab, a window list) and the page's heading say what is
// shown: "svc-0-1 · Containers (table) · trioscope"; "Containers (table): 30 nodes".
// The heading is no live region: its counts follow diffs without being read out.
function showTitle() {
  const shown = `${viewTitle(state.view)} (${state.mode === "table" ? "table" : "graph"})`;
  const node = state.node && shownNodes().get(shownOf(state.node));
  const title = [node ? visibleShort(node.label, 60) : "", shown, "trioscope"].filter(Boolean).join(" · ");
  if (document.title !== title) document.title = title;
  const counts = $("counts").textContent; // none before the first render
  const heading = counts ? `${shown}: ${counts}` : shown;
  if ($("view-title").textContent !== heading) $("view-title").textContent = heading;
}

function fillMetricChoices(names = model.metricNames()) {
  for (const [select, blank, chosen] of [[$("metric-name"), "metric ≥ …", state.metric], [$("size-by"), "nothing", state.size]]) {
    const wanted = [...new Set([...names, ...(chosen ? [chosen] : [])])];
    const have = [...select.options].slice(1).map((o) => o.value);
    if (have.join("\n") !== wanted.join("\n")) {
      select.replaceChildren(new Option(blank, ""), ...wanted.map((name) => new Option(metricLabel(name), name)));
    }
    select.value = chosen;
  }
}

// ---- the live topology -------------------------------------------------------------------

// The server's view for the page's: the processes view grouped by name is
// `processes-by-name`, ungrouped `processes` (each subscribed to when shown).
function serverView(of = state) {
  return of.view === "processes" ? processesView(of.group) : of.view;
}

// Where the layout puts a node: with its parent (a group of processes: its host).
function groupOf(node) {
  return node.parent || "";
}

// The nodes the view shows.
function shownNodes() {
  return processes ? processes.nodes : model.nodes;
}

// The shown node standing for `id`: a process's group where it is grouped.
function shownOf(id) {
  return (processes && state.group && id && groupShowing(processes.nodes, id)) || id;
}

function groupNode(id) {
  return (processes && processes.nodes.get(id)) || null;
}

function showDetails() {
  if (!isGroupId(state.node)) return details.show(state.node);
  shownGroup = model.version === null ? undefined : groupNode(state.node); // undefined: not known yet
  details.showGroup(state.node, shownGroup);
}

// The processes view's options changed: what it shows is built again, and laid out afresh.
function regroup() {
  processes = state.view === "processes" ? new ProcessesShown({ kernel: state.kthreads }) : null;
  if (processes) processes.reset(model.nodes);
  layout.clear();
  graph.placed = false;
  tableTouched = null;
}

function liveUrl() {
  liveView = serverView();
  resyncing = false;
  awaitingReset = true; // until this connection's first reset, the view is the last connection's
  return socketUrl(`/api/v1/ws?view=${encodeURIComponent(liveView)}`);
}

function onTopology(payload) {
  if (payload.view !== serverView()) return; // still the previous view's, in flight
  // What the page itself spends on a view is from here to "trioscope:interactive" (bench/ui.py).
  if (payload.reset && document.documentElement.dataset.ready !== "true") performance.mark("trioscope:view-received");
  const before = payload.reset ? null : formerNodes(payload);
  const metricsBefore = payload.reset ? null : model.metricNames().join("\n");
  const change = model.apply(payload);
  if (change.kind === "stale") return;
  if (change.kind === "gap") {
    if (!resyncing) live.send({ type: "resync" }); // a lost update: the server sends the whole view again
    resyncing = true;
    showConnection();
    return;
  }
  if (processes) processes.apply(change, model.nodes);
  if (change.kind === "reset") tableTouched = null;
  else if (tableTouched) for (const ids of [change.added, change.updated, change.removed]) for (const id of ids) tableTouched.add(id);
  if (change.kind === "reset") {
    resyncing = false;
    awaitingReset = false;
  }
  if (behind && model.version >= serverVersion) behind = false; // caught up with the server's last known version
  showConnection();
  $("stat-version").textContent = String(model.version);
  const nodes = change.added.length + change.updated.length + change.removed.length;
  if (change.kind !== "reset" && !nodes && !change.edges) return; // a diff for other views: nothing to draw
  lastUpdate = new Date();
  $("stat-updated").textContent = clock(lastUpdate);
  const selected = state.node && [change.added, change.updated, change.removed].some((ids) => ids.includes(state.node));
  if (selected) details.touched();
  // Reports come every few seconds from every host, most changing nothing drawn (last_seen):
  // those redraw nothing (a group's details are drawn from the view: they follow it).
  const drawn = change.kind === "reset" || change.added.length || change.removed.length || change.edges
    || (selected && isGroupId(state.node));
  const updated = drawn ? "shown" : changesShown(change.updated, before);
  if (change.kind === "reset" && state.mode === "graph" && shownNodes().size >= STEPPED_FROM) {
    renderInSteps();
  } else if (updated === "shown" || model.metricNames().join("\n") !== metricsBefore) { // a metric came or went: a choice, a column
    invalidate();
  } else if (updated === "size") {
    // The graph's sizes follow within a second (or three renders' time, when a render
    // takes more than a third of one: most of the page's time stays the user's), not at each version.
    sizes.every = Math.max(SIZES_EVERY_MS, 3 * renderer.lastCost);
    sizes.request();
  }
}

// The nodes a diff is about to replace, as they were (to tell whether anything shown changed).
function formerNodes(payload) {
  const former = new Map();
  for (const part of [payload.add, payload.update]) {
    for (const id in (part && part.nodes) || {}) {
      const node = model.nodes.get(id);
      if (node) former.set(id, node);
    }
  }
  return former;
}

// Whether any of the `updated` nodes looks different now from `before` (its
// former self): "shown" when what the graph or the table shows of it changed,
// or whether the filters let it through; else "size" when only the metric the
// graph sizes nodes by changed; else "".
function changesShown(updated, before) {
  if (!updated.length) return "";
  const metrics = state.mode === "table" ? model.metricNames().slice(0, MAX_METRIC_COLUMNS) : [];
  const sizeBy = state.mode === "graph" ? state.size : "";
  const sizeOf = (node) => (node.metrics ? node.metrics[sizeBy] : undefined);
  const match = compileFilter(filtersOf(state));
  let sized = false;
  for (const id of updated) {
    const old = before.get(id), node = model.nodes.get(id);
    if (!old || !node) return "shown";
    if (looks(old, metrics) !== looks(node, metrics)) return "shown";
    if (match.active && match(old) !== match(node)) return "shown";
    if (sizeBy && !sized && sizeOf(old) !== sizeOf(node)) sized = true;
  }
  return sized ? "size" : "";
}

// What the graph and the table show of a node: its colour, name, kind and
// parent, its container's name (model.names: a group disc's label, the
// Parent column), how many processes a group holds, and the metrics shown
// (the table's columns; the one the graph sizes nodes by is changesShown's).
function looks(node, metrics) {
  const meta = node.metadata || {};
  const values = metrics.map((name) => (name && node.metrics ? node.metrics[name] : undefined));
  return JSON.stringify([health(node), node.status, node.label, node.type, node.parent || "",
    meta.container_name || "", meta.pids ? meta.pids.length : null, meta.kernel_thread === true, values]);
}

function startLive() {
  if (live) return;
  live = new ReconnectingSocket(liveUrl, {
    protocols: tokenProtocols, // needed where the server protects reads (auth.protect_reads)
    onMessage: (message) => {
      if (message.type === "topology_update") onTopology(message.payload);
      else if (message.type === "error") console.warn(`trioscope: the server refused a request: ${message.payload.message}`);
    },
    // The view changed while this connection was being made: ask for the new one.
    onOpen: () => {
      followView();
      if (principal) refreshStats(); // the stats bar counts this client from now on
    },
    onState: (kind, info = {}) => {
      connection = { kind, info, until: kind === "reconnecting" ? Date.now() + info.delayMs : null };
      if (kind !== "live") {
        behind = false; // a new connection starts with the whole view
        // No stats while the socket is down (they were asked every 5 s of an outage: 12 failures in 57 s).
        if (statsTimer !== -1) {
          clearTimeout(statsTimer);
          statsTimer = null;
        }
      }
      showConnection();
    },
  });
}

// The connection's state as the page shows it: "live" only while the page keeps up with the server.
function connectionState() {
  const { kind } = connection;
  if (kind !== "live") return kind;
  if (resyncing) return "resyncing";
  if (model.version === null || awaitingReset) return "loading";
  return behind ? "behind" : "live";
}

const CONNECTION_LABELS = {
  closed: "not signed in", connecting: "connecting…", live: "live", loading: "loading the view…",
  resyncing: "resyncing (an update was lost: the whole view is on its way)",
  behind: "behind (the page is catching up with the server)",
};

function showConnection() {
  const element = $("connection");
  const kind = connectionState();
  const { info } = connection;
  clearTimeout(countdown);
  let label = CONNECTION_LABELS[kind] || kind;
  if (kind === "reconnecting") {
    const left = Math.max(0, connection.until - Date.now());
    label = `reconnecting in ${Math.ceil(left / 1000)} s`;
    if (left > 0) countdown = setTimeout(showConnection, (left % 1000) || 1000); // the next whole second
  }
  // A browser is told nothing of why a handshake failed (a 429 or 503 looks like a lost network):
  // after a few in a row, say what it likely is (and while the next try is made).
  const trying = kind === "reconnecting" || kind === "connecting";
  const refused = trying && info.failures >= REFUSED_AFTER;
  if (refused) label += ` (${REFUSED})`;
  if (element.textContent !== label) element.textContent = label;
  element.dataset.state = kind;
  element.dataset.refused = String(refused);
  // Announced when what the user cares about changes: not at every tick of a countdown, nor
  // at each try of a reconnection (connecting, then reconnecting again: 14 times in 49 s).
  const news = `${trying ? "trying" : kind} ${refused}`;
  if (news !== announced) {
    const said = trying && (announced || "").startsWith("trying") ? "reconnecting"
      : kind === "reconnecting" ? "reconnecting" : CONNECTION_LABELS[kind] || kind;
    announced = news;
    $("announcer").textContent = `Connection: ${said}${refused ? ` (${REFUSED})` : ""}`;
  }
}

function switchView() {
  model = new Topology();
  viewNumber += 1;
  regroup();
  lastUpdate = null;
  document.documentElement.dataset.ready = "false";
  followView();
  showConnection();
}

// Not connected right now? Then the next connection asks for the view in its URL.
function followView() {
  const view = serverView();
  if (live && liveView !== view && live.send({ type: "subscribe", topics: ["topology"], view })) {
    liveView = view;
    resyncing = false;
  }
}

// Something shown changed: rendered in a later frame, with whatever else changes meanwhile.
function invalidate() {
  renderer.request();
}

// A large view's first render, in steps of a task each: laying out its nodes,
// then working out what the graph draws (the edges between groups), then,
// in a frame, drawing. In one frame, the processes of 1,000 hosts held the
// page 0.6-1.3 s (~0.2 s laying out, ~0.3 s of edges between groups, ~0.1 s
// drawing, the rest the browser's), where the user's input waits for the
// task to end. A step finds what it works on as it is then (another view, a
// newer reset): at worst its work is done again by the render.
const STEPPED_FROM = 20000; // nodes shown
let steps = null; // the steps left of the render under way
function renderInSteps() {
  const pending = steps === null;
  steps = [() => layout.update(shownNodes(), groupOf),
    () => { graph.setData(graphData()); graph.prepare(); },
    () => invalidate()];
  if (pending) setTimeout(nextStep, 0);
}

function nextStep() {
  const step = steps.shift();
  if (steps.length) setTimeout(nextStep, 0);
  else steps = null;
  if (state.mode === "graph" || !steps) step();
}

// The type filter is offered in the All view only; elsewhere the view is the type.
function filtersOf(of) {
  return { ...of, type: of.view === "all" ? of.type : "" };
}

// What the graph is given to draw: the nodes shown and what the filters let
// through (`shows` and the filters' `key`, as render worked them out; else
// worked out here, as render would).
function graphData(shows = null, key = null) {
  if (shows === null) {
    const match = compileFilter(filtersOf(state));
    shows = match.active ? match : everything;
    key = filterKey(filtersOf(state));
  }
  return { nodes: shownNodes(), names: model.names, edges: model.edges, edgesVersion: model.edgeVersion, layout,
    match: shows, matchKey: `${key}\n${matchedVersion}`, sizeBy: state.size, selected: shownOf(state.node) };
}

// The filters (not the version: a diff moves only the table's rows it changes; a new view sorts afresh).
function filterKey(filters) {
  return `${viewNumber}\n${JSON.stringify([filters.q, filters.type, filters.labels, filters.metric, filters.min,
    state.group, state.kthreads])}`;
}

function render() {
  const all = shownNodes();
  // The table shows no places: the graph's layout is brought up to date when the graph is shown.
  if (state.mode === "graph") layout.update(all, groupOf);
  renderedVersion = model.version;
  const filters = filtersOf(state);
  const match = compileFilter(filters);
  // Decided once per render, not per node drawn (a group of processes lists
  // their pids: a search for a pid shows the pid's group).
  let matched = null;
  if (match.active) {
    matched = new Set();
    let same = lastMatched !== null;
    for (const [id, node] of all) {
      if (!match(node)) continue;
      matched.add(id);
      if (same && !lastMatched.has(id)) same = false;
    }
    if (!same || matched.size !== lastMatched.size) matchedVersion += 1;
  } else if (lastMatched !== null) {
    matchedVersion += 1;
  }
  lastMatched = matched;
  const shows = matched ? (node) => matched.has(node.id) : everything;
  const key = filterKey(filters);
  const metrics = model.metricNames();
  const shown = matched ? matched.size : all.size;
  const loading = model.version === null;
  const counted = (n) => `${n} node${n === 1 ? "" : "s"}`;
  $("counts").textContent = loading ? "loading…" : matched ? `${shown} of ${counted(all.size)}` : counted(all.size);
  $("counts").dataset.shown = String(shown);
  if (countsAsked && !loading) announceCounts();
  if (processes && !state.group) {
    const kernel = processes.kernelThreads.size;
    $("kernel-count").textContent = kernel ? `(${kernel}${state.kthreads ? "" : " hidden"})` : "";
  }
  if (state.mode === "graph") {
    tableTouched = null; // the table, when shown again, looks at every node
    graph.setData(graphData(shows, key));
    graph.drawNow(); // in this frame, and counted in this render's cost (pacer.js)
    // A picture to a screen reader: what it shows, and where the same nodes can be read and picked.
    const described = `Topology graph of ${$("counts").textContent}: the Table display lists them for keyboard and screen-reader use.`
      + " Arrow keys pan it, + and - zoom.";
    if ($("canvas").getAttribute("aria-label") !== described) $("canvas").setAttribute("aria-label", described);
  } else {
    table.setData({ all, shows, names: model.names, metrics, showType: state.view === "all", sort: state.sort, dir: state.dir,
      selected: shownOf(state.node), key, touched: tableTouched });
    tableTouched = new Set();
  }
  sizes.done(); // this render drew the sizes as they are now: the next change of sizes waits from here
  if (isGroupId(state.node) && groupNode(state.node) !== shownGroup) showDetails(); // it changed, or went
  fillMetricChoices(metrics);
  showEmpty();
  showTitle(); // the counts, the selected node's name as it now is
  $("stat-version").textContent = loading ? "–" : String(model.version);
  $("stat-updated").textContent = clock(lastUpdate);
  if (!loading && document.documentElement.dataset.ready !== "true") {
    document.documentElement.dataset.ready = "true";
    performance.mark("trioscope:interactive");
    // The frame after the one the graph draws in: what it drew has been handed
    // to the compositor (bench/ui.py: rasterising many edges cost seconds once).
    requestAnimationFrame(() => requestAnimationFrame(() => performance.mark("trioscope:painted")));
  }
}

// The counts, read out once the user's filters have stood still a moment (a
// diff's new counts are not: they would talk over everything).
function announceCounts() {
  countsAsked = false;
  clearTimeout(countsTimer);
  countsTimer = setTimeout(() => {
    say($("counts-announcer"), $("counts").textContent); // the same count again is still an answer
  }, COUNTS_QUIET_MS);
}

// Nothing reported that this user may see, in any view (the stats count what the
// user sees: where reads are protected, their tenant's nodes only): how to get
// nodes shown (empty.js). Nothing in this view but nodes in others: which.
function showEmpty() {
  const loaded = model.version !== null && model.nodes.size === 0;
  const nothing = loaded && serverNodes === 0;
  const elsewhere = loaded && serverNodes > 0;
  $("empty").hidden = !nothing;
  if (nothing) showAdvice(emptyAdvice(serverStats, principal, location.origin));
  $("empty-view").hidden = !elsewhere;
  if (elsewhere) {
    const others = VIEWS.filter((view) => view !== state.view && view !== "all" && serverByType[kindOf(view)] > 0);
    $("empty-view-others").textContent = others.length
      ? `Nodes are in: ${others.map((view) => `${view} (${serverByType[kindOf(view)]})`).join(", ")}.`
      : "";
  }
}

function showAdvice({ title, hidden, lead, command, note }) {
  $("empty-title").textContent = title;
  $("empty-hidden").hidden = !hidden;
  $("empty-hidden").textContent = hidden || "";
  $("empty-lead").textContent = lead;
  $("empty-command").textContent = command;
  $("empty-note").hidden = !note;
  $("empty-note").textContent = note || "";
}

// ---- stats bar ---------------------------------------------------------------------------

async function refreshStats() {
  clearTimeout(statsTimer);
  statsTimer = -1; // running: a second sign-in does not start a second loop
  const asked = principal;
  try {
    const stats = await api("/api/v1/query/stats");
    if (principal !== asked) return; // signed out (or in again) meanwhile: not this session's figures
    serverStats = stats;
    serverNodes = stats.topology.nodes;
    serverByType = stats.topology.nodes_by_type || {};
    // Behind: this page has not reached, in the time between two polls, the version the
    // server had at the last one (every version reaches every client of a view, as a diff
    // or within a reset).
    const previous = serverVersion;
    serverVersion = stats.topology.version;
    behind = typeof previous === "number" && model.version !== null && !awaitingReset && model.version < previous;
    showConnection();
    $("stat-agents").textContent = String(stats.agents);
    $("stat-nodes").textContent = String(stats.topology.nodes);
    $("stat-clients").textContent = String(stats.websocket_clients);
    showEmpty();
  } catch (error) {
    // 401 brings the sign-in; 0 (unreachable) shows as the connection state already.
    if (error.status !== 401 && error.status !== 0) console.warn(`trioscope: stats: ${error.message}`);
  }
  // Not if torn down meanwhile, nor while the live socket is down (the server is
  // likely away: the socket backs off, and its reconnection polls again: onOpen).
  if (statsTimer === -1) statsTimer = principal && connection.kind === "live" ? setTimeout(refreshStats, STATS_EVERY_MS) : null;
}

// ---- dialogs -----------------------------------------------------------------------------

// Asks for a confirmation (resolves "" or null) or, with `input`, for a line of text.
// `action`: the confirming button's words ("Stop svc-0-1"): "OK" said nothing of what it does.
function ask({ title, text, input, action = "OK" }) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = action;
  const field = $("confirm-input");
  field.hidden = input === undefined;
  $("confirm-input-label").hidden = input === undefined;
  field.value = input ?? "";
  dialog.returnValue = "";
  returnFocusAfter(dialog);
  dialog.showModal();
  if (input !== undefined) field.focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok" ? field.value : null), { once: true });
  });
}

// Not a submit button: Enter in the field submits with OK, the form's only one.
$("confirm-cancel").addEventListener("click", () => $("confirm").close("cancel"));

function showOutput({ title, text, refresh }) {
  const dialog = $("output");
  $("output-title").textContent = title;
  $("output-text").textContent = text || "(no output)";
  const button = $("output-refresh");
  button.hidden = !refresh;
  button.onclick = refresh ? () => { dialog.close(); refresh(); } : null;
  if (!dialog.open) {
    returnFocusAfter(dialog);
    dialog.showModal();
  }
}

// ---- signing in --------------------------------------------------------------------------

const MAX_TOKEN = 8192; // characters; a user token is a few hundred, and the server takes headers of 16 KiB at most

function askToSignIn(message = "") {
  const dialog = $("signin");
  $("signin-error").textContent = message;
  // The error is the field's while it shows: read with it, each time it has the focus.
  const field = $("signin-token");
  if (message) {
    field.setAttribute("aria-invalid", "true");
    field.setAttribute("aria-describedby", "signin-error");
  } else {
    field.removeAttribute("aria-invalid");
    field.removeAttribute("aria-describedby");
  }
  if (!dialog.open) dialog.showModal();
  $("signin-token").focus();
}

$("signin").addEventListener("cancel", (event) => event.preventDefault()); // nothing works without it
$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  // A token copied with its header's scheme ("Bearer eyJ…") is the token after it.
  // A token has no spaces: line breaks and zero-width characters within it are
  // what copying from a terminal or a chat adds.
  const typed = $("signin-token").value;
  const value = typed.trim().replace(/^bearer\s+/i, "").replace(/[\s\u200B-\u200D\u2060\uFEFF]+/g, "");
  // Said here, not by the browser's validation (the form has novalidate): a
  // message of the last attempt ("That token expired…") would stay beside it.
  // A token the browser cannot send as a header (a "…" where it was cut) failed
  // in fetch, which the page took for an unreachable server, and was kept.
  const problem = !value ? (typed ? "That token is empty: it is only spaces or line breaks. Paste a user token."
    : "A token is needed: paste a user token.")
    : value.length > MAX_TOKEN ? `That is not a token: ${value.length} characters, where a token has a few hundred. Paste a user token.`
      : !/^[\x21-\x7E]+$/.test(value) ? "That token holds a character a token cannot have (a “…” where it was cut, a letter of another alphabet): paste the whole token."
        : null;
  if (problem) {
    askToSignIn(problem);
    return;
  }
  setToken(value);
  if (await signIn()) {
    $("signin").close();
    $("signin-token").value = "";
  }
});

// Checks the stored token with the server; true when it is good.
async function signIn() {
  try {
    principal = await api("/api/v1/users/me");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      const expired = expiredAt(token());
      setToken(null);
      askToSignIn(expired ? `That token expired at ${expired.toLocaleString()}. Ask for a new one.`
        : "That token is not valid. Ask for a new one.");
    } else {
      askToSignIn(`The server cannot check the token right now: ${error.message}`);
    }
    return false;
  }
  $("who").textContent = `${principal.user_id} · ${principal.tenant} · ${principal.role}`;
  $("sign-out").hidden = false;
  document.documentElement.dataset.role = principal.role;
  alerts.clear();
  controls.setPrincipal(principal);
  startLive();
  if (statsTimer === null) refreshStats();
  clearTimeout(expiry);
  const left = principal.expires_at ? Date.parse(principal.expires_at) - Date.now() : Infinity;
  if (left < 2 ** 31) { // setTimeout's longest wait (~24 days); longer tokens are checked by the next 401
    expiry = setTimeout(() => events.dispatchEvent(new CustomEvent("signed-out")), Math.max(0, left));
  }
  if (state.node) showDetails();
  return true;
}

// When a token (a JWT) expired, read from its payload's `exp` (not verified: the
// server does that); null when it has not, or it says nothing readable.
function expiredAt(jwt) {
  try {
    const part = (jwt || "").split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const { exp } = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
    return typeof exp === "number" && exp * 1000 <= Date.now() ? new Date(exp * 1000) : null;
  } catch {
    return null;
  }
}

// Signed out (by the user or by a 401): nothing keeps running or showing behind the sign-in.
function teardown() {
  setToken(null);
  principal = null;
  clearTimeout(expiry);
  controls.setPrincipal(null);
  alerts.clear();
  if (live) live.close();
  live = null;
  clearTimeout(statsTimer);
  statsTimer = null;
  serverStats = null;
  serverNodes = null;
  serverByType = {};
  serverVersion = null;
  behind = false;
  countsAsked = false;
  clearTimeout(countsTimer);
  // The URL (the selected node too) stays: signing in again shows what it did.
  details.hide();
  switchView();
  for (const id of ["stat-agents", "stat-nodes", "stat-clients", "stat-updated", "stat-version"]) $(id).textContent = "–";
  invalidate(); // the last user's nodes go from the graph and the table
  $("who").textContent = "";
  $("sign-out").hidden = true;
}

function signOut() {
  teardown();
  askToSignIn();
}

events.addEventListener("signed-out", () => {
  if (!principal) return;
  teardown();
  askToSignIn("Your session ended (the token expired or was revoked). Sign in again.");
});

// ---- start -------------------------------------------------------------------------------

// For automation and tests: read-only views of what the page shows.
window.trioscope = Object.freeze({
  position: (id) => graph.screenPosition(id),
  groupLabels: () => graph.shownGroupLabels(), // the groups' names as drawn (cut to their cells' width)
  radius: (id) => (shownNodes().has(id) ? graph.radius(shownNodes().get(id)) : null), // in world units
  zoom: () => graph.camera.k, // screen pixels per world unit
  // Shown by a render: laid out (graph), or in the view the table last showed.
  rendered: (id) => (state.mode === "graph" ? Boolean(layout.position(id))
    : renderedVersion === model.version && shownNodes().has(id)),
  layoutUpdates: () => layout.updates, // times the layout was brought up to date
  tableLooked: () => table.looked, // nodes the table's last render (sorting nothing afresh) looked at
  nodeIds: () => [...shownNodes().keys()], // as shown: groups of processes where they are grouped
  version: () => model.version,
  lastFrameMs: () => graph.lastFrameMs,
  draws: () => graph.draws, // canvas redraws so far
  groupEdgeRuns: () => graph.betweenRuns, // times the edges between groups were worked out
  hitTest: (x, y) => { // the node at page (x, y), and what finding it looked at
    const rect = $("canvas").getBoundingClientRect();
    return { id: graph.nodeAt(x - rect.left, y - rect.top), ...graph.lastHitTest };
  },
  hoverTests: () => graph.hoverTests, // hit tests made for the pointer's moves (at most one a frame)
  idle: () => !renderer.scheduled && !graph.pacer.scheduled && sizes.timer === null && steps === null, // nothing waits to be drawn
});

regroup();
buildToolbar();
noticeUnknown(unknownParams(location.search));
saveState(); // the URL says what is shown: what it asked for that does not exist goes from it
syncControls();
if (token()) signIn();
else askToSignIn();
