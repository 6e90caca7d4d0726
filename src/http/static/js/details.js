// The details panel of the selected node: metadata, labels, its parents,
// groups, children and connections (each a link to that node), its metrics
// with 15-second sparklines, any series of its probe from the metrics API
// (series.js), and for containers the controls it allows. A group of
// processes (groups.js) is described from the live view's node.

import { api } from "./api.js";
import { el, joinWithin, sparkline, stableKey } from "./dom.js";
import { STALE_REASON, engineDown, stale, statusText } from "./engine.js";
import { health } from "./health.js";
import { metricLabel, metricValue, visible } from "./format.js";
import { memberIds } from "./groups.js";
import { labelOfId } from "./model.js";
import { SeriesChart } from "./series.js";

const REFRESH_MS = 15000; // the metrics' resolution: nothing new comes sooner
const HISTORY_S = 900; // the sparklines' window: the history asked for (duration)
const HIDDEN_METADATA = new Set(["labels", "controls", "left_out", "gaps"]); // left_out, gaps: said in words above
const MAX_LINKS = 50;
const REMEMBERED = 200; // ids of nodes the panel has loaded, remembered to tell "gone" from "unknown"

export class DetailsPanel {
  // wasShown(id): whether the page showed that node in this session (in the
  // live view, or picked from it): a 404 for it then means gone, not unknown.
  constructor(root, { onNavigate, onClose, controls, wasShown = () => false }) {
    this.root = root;
    this.wasShown = wasShown;
    this.loaded = new Set(); // the last REMEMBERED ids loaded here, oldest first
    this.title = root.querySelector("#details-title");
    this.title.tabIndex = -1; // takes the focus after a link to another node (the link is gone)
    this.body = root.querySelector("#details-body");
    this.onNavigate = onNavigate;
    this.controls = controls;
    this.id = "";
    this.timer = null;
    this.abort = null;
    // A loaded node is shown as [top, series, rest]: the series section stays
    // in place while the parts around it are rebuilt at each refresh.
    this.series = new SeriesChart();
    this.top = el("div", { class: "details-top" });
    this.rest = el("div", { class: "details-rest" });
    root.querySelector("#details-close").addEventListener("click", onClose);
  }

  show(id) {
    if (!id) return this.hide();
    const changed = id !== this.id;
    this.id = id;
    this.root.hidden = false;
    if (changed) {
      this.controls.leave();
      this.title.textContent = visible(id);
      this.root.dataset.state = "loading";
      this.root.dataset.node = id;
      this.#message(el("p", { class: "muted", text: "loading…" }));
    }
    this.refresh();
  }

  hide() {
    this.controls.leave();
    this.id = "";
    this.root.hidden = true;
    this.#stop();
  }

  // A group of processes (the processes-by-name view): `group` its node as
  // the view shows it, null when no process of that name is on that host any
  // more (undefined: the view is still loading). Nothing to fetch: the live
  // view has it, and this is called again whenever it changes.
  showGroup(id, group) {
    this.#stop();
    this.controls.leave();
    this.id = id;
    this.root.hidden = false;
    this.root.dataset.node = id;
    if (!group) {
      this.title.textContent = visible(id.split(":").slice(2).join(":") || id);
      this.root.dataset.state = group === undefined ? "loading" : "gone";
      this.#message(group === undefined ? el("p", { class: "muted", text: "loading…" })
        : el("p", { text: "No process of that name runs on that host now." }));
      return;
    }
    this.root.dataset.state = "loaded";
    const name = visible(group.metadata.name);
    this.title.textContent = name;
    const members = memberIds(group);
    const pids = group.metadata.pids || [];
    const statuses = Object.entries(group.metadata.statuses || {}).map(([status, n]) => `${n} ${status}`).join(", ");
    const facts = [["name", name], ["host", visible(labelOfId(group.host))], ["processes", members.length],
      ["statuses", visible(statuses)]];
    this.#message(
      el("p", {},
        el("span", { class: `badge status ${health(group)}`, text: visible(group.status) }), " ",
        el("span", { class: "badge", text: "processes of one name" })),
      el("section", { class: "metrics" }, el("h3", { text: "Metrics (summed)" }),
        // A process's memory is its resident set: pages they share (a pool of
        // workers' code and copy-on-write heap) are counted once per process.
        el("p", { class: "muted", text: "Memory is each process's resident size: shared pages count once per process." }),
        Object.entries(group.metrics).map(([metric, value]) => el("div", { class: "metric", "data-metric": metric },
          el("span", { text: metricLabel(metric) }), el("span"), el("span", { class: "value", text: metricValue(metric, value) })))),
      el("h3", { text: "Metadata" }),
      el("dl", {}, facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })])),
      el("h3", { text: `Processes (${members.length})` }),
      el("ul", { "data-list": "processes" },
        members.slice(0, MAX_LINKS).map((member, n) => el("li", {}, this.#link(member, `${name} ${pids[n]}`))),
        members.length > MAX_LINKS ? el("li", { class: "muted", text: `and ${members.length - MAX_LINKS} more` }) : null));
  }

  #link(id, text) {
    return el("a", { href: "#", "data-node": id, text,
      onclick: (event) => {
        event.preventDefault();
        this.onNavigate(id);
        this.title.focus(); // the panel now shows that node: it is read from its name
      } });
  }

  // The body without a loaded node's parts (loading, gone, failed, a group).
  #message(...children) {
    this.series.stop();
    this.body.replaceChildren(...children);
  }

  #stop() {
    this.series.stop();
    clearTimeout(this.timer);
    clearTimeout(this.soon);
    this.soon = null;
    if (this.abort) this.abort.abort();
  }

  // Called when the live stream changed the node: fetch again, but not more
  // often than once a second.
  touched() {
    if (!this.id || this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = null;
      this.refresh();
    }, 1000);
  }

  async refresh() {
    clearTimeout(this.timer);
    if (this.abort) this.abort.abort();
    const id = this.id;
    if (!id) return;
    this.abort = new AbortController();
    try {
      const details = await api(`/api/v1/query/nodes/${encodeURIComponent(id)}?duration=${HISTORY_S}s`, { signal: this.abort.signal });
      if (id === this.id) this.#render(details);
    } catch (error) {
      if (error.name === "AbortError" || id !== this.id) return;
      if (error.status === 404) {
        // An id this page never showed (a shared or hand-made URL) may never have existed.
        const gone = this.loaded.has(id) || this.wasShown(id);
        this.#message(el("p", { text: gone ? "This node is gone: its probe no longer reports it."
          : "This node is not in the topology: no probe reports it (an unknown id, or a node that is gone)." }));
        this.root.dataset.state = gone ? "gone" : "unknown";
      } else {
        this.#message(el("p", { class: "error", text: `Could not load the details: ${error.message}` }));
      }
    }
    if (id === this.id) this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
  }

  #render(details) {
    // The parts are built anew: the control that had the focus (Stop, Follow, a
    // link) gives it to its successor, or a keyboard user is sent back to <body>
    // at every refresh. Asked first: building them takes the live log out of the page.
    const focused = this.body.contains(document.activeElement) ? stableKey(document.activeElement) : null;
    const node = details.node;
    this.#remember(this.id);
    this.root.dataset.state = "loaded";
    this.root.dataset.node = node.id;
    this.title.textContent = visible(node.label);
    const metadata = node.metadata || {};
    const top = [
      el("p", {},
        el("span", { class: `badge status ${health(node)}`, text: visible(statusText(node)) }), " ",
        el("span", { class: "badge", text: visible(node.type) }), " ",
        el("span", { class: "muted", text: `seen ${new Date(node.last_seen).toLocaleTimeString()}` })),
    ];
    // Said in words (and the warning's shape), not by a colour: the metadata below has it only as keys.
    if (engineDown(node)) {
      const problem = metadata.container_engine_problem;
      top.push(el("p", { class: "engine status warning", "data-engine": "unreachable",
        text: `Container engine: unreachable${problem ? ` — ${visible(problem)}` : ""}` }));
    } else if (stale(node)) {
      top.push(el("p", { class: "stale-reason", "data-stale": "",
        text: `Last known state: ${visible(metadata.last_state)}. ${STALE_REASON}` }));
    }
    const cut = leftOut(metadata.left_out);
    if (cut) top.push(el("p", { class: "status warning", "data-left-out": "", text: cut }));
    for (const gap of unseen(metadata.gaps)) top.push(el("p", { class: "status warning", "data-gap": "", text: gap }));
    // null for those who may not control it: nothing shown (replaceChildren would write "null").
    const controls = node.type === "container" ? this.controls.render(node, details) : null;
    if (controls) top.push(controls);
    top.push(this.#metrics(node, details.metrics_history));
    const sections = [];
    const facts = Object.entries(metadata).filter(([k]) => !HIDDEN_METADATA.has(k));
    sections.push(el("h3", { text: "Metadata" }),
      el("dl", {}, facts.flatMap(([k, v]) => [el("dt", { text: visible(k) }), el("dd", { text: show(v) })])));
    const labels = Object.entries(metadata.labels || {});
    if (labels.length) {
      sections.push(el("h3", { text: "Labels" }),
        el("dl", { class: "labels" }, labels.flatMap(([k, v]) => [el("dt", { text: visible(k) }), el("dd", { text: visible(v) })])));
    }
    for (const [title, list] of [["Parents", details.parents], ["Groups", details.groups],
      ["Children", details.children], ["Connected", details.connected]]) {
      if (list && list.length) sections.push(el("h3", { text: `${title} (${list.length})` }), this.#links(list, title));
    }
    this.top.replaceChildren(...top);
    this.rest.replaceChildren(...sections);
    if (this.series.root.parentNode !== this.body) this.body.replaceChildren(this.top, this.series.root, this.rest);
    if (focused && !this.body.contains(document.activeElement)) {
      const again = this.body.querySelector(focused);
      if (again) again.focus({ preventScroll: true });
    }
    this.series.refresh(node.agent_id || "", details.deployment_hash || "");
  }

  #remember(id) {
    this.loaded.delete(id);
    this.loaded.add(id);
    if (this.loaded.size > REMEMBERED) this.loaded.delete(this.loaded.values().next().value);
  }

  #metrics(node, history) {
    const points = (history && history.points) || [];
    const names = Object.keys(node.metrics || {});
    if (!names.length) return el("p", { class: "muted", text: "No metrics reported." });
    const resolution = (history && history.resolution_seconds) || 15;
    // The points are the buckets that hold data: each at its own time over
    // the window, which ends now (or at the newest point, on a page whose
    // clock is behind the server's), so a stretch the node was not reported
    // stays as wide as it lasted. A line crosses what is within twice the
    // reports' usual spacing (one a little late skips a bucket), not more.
    const times = points.map((p) => Date.parse(p.timestamp) / 1000);
    const end = Math.max(Date.now() / 1000, times.length ? times[times.length - 1] : 0);
    const axis = { start: end - HISTORY_S, end, maxStep: joinWithin(times, resolution) };
    // An embedded server's history is its memory: an empty stretch before it
    // began is no outage of this node, and is said to be so.
    const since = Date.parse((history && history.since) || "") / 1000;
    const began = since > axis.start ? el("p", { class: "muted", "data-history-since": "",
      text: `No history before ${new Date(since * 1000).toLocaleTimeString()}: the server started then, and keeps ` +
        "none across restarts without a report bus." }) : null;
    return el("section", { class: "metrics" },
      el("h3", { text: `Metrics (${resolution} s)` }), began,
      names.map((name) => el("div", { class: "metric", "data-metric": name },
        el("span", { text: visible(metricLabel(name)) }),
        sparkline(points.map((p, i) => [times[i], p[name]]), axis),
        el("span", { class: "value", text: metricValue(name, node.metrics[name]) }))));
  }

  #links(list, title) {
    return el("ul", { "data-list": title.toLowerCase() }, list.slice(0, MAX_LINKS).map((item) =>
      el("li", {}, this.#link(item.id, visible(item.label || item.id)),
        item.connections ? el("span", { class: "muted", text: ` ${item.connections} conn.` }) : null)),
    list.length > MAX_LINKS ? el("li", { class: "muted", text: `and ${list.length - MAX_LINKS} more` }) : null);
  }
}

function show(value) {
  if (value === null || value === undefined) return "–";
  if (Array.isArray(value)) return value.map(show).join(", ");
  if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${visible(k)}: ${show(v)}`).join(", ");
  return visible(value);
}

// What the host's probe left out of its report to fit the server's limits
// (its node, children and edges are then not all there is), in words.
export function leftOut(cut) {
  if (!cut || typeof cut !== "object") return "";
  const count = (n, one, many) => (Number.isInteger(n) && n > 0 ? `${n} ${n === 1 ? one : many}` : "");
  const parts = [count(cut.processes, "process", "processes"), count(cut.connections, "connection", "connections")]
    .filter(Boolean);
  const gone = parts.length ? `${parts.join(" and ")} left out` : "";
  const shortened = count(cut.containers, "container", "containers");
  const said = [gone, shortened && `${shortened} left out or cut short`].filter(Boolean).join("; ");
  if (!said) return "";
  return `This host's report was cut to fit the server's limits: ${said}. ` +
    "Raise the server's --agent-memory-budget or --max-body-size to see all of it.";
}

// What the host's probe could not see of it (its rights, its namespaces),
// each in words with what to grant: its node, children and edges are then
// not all there is.
const GRANT = "run the probe as root, or grant it CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH " +
  "(systemd AmbientCapabilities=, docker --cap-add)";
export function unseen(gaps) {
  if (!gaps || typeof gaps !== "object") return [];
  const count = (n) => (Number.isInteger(n) && n > 0 ? n : 0);
  const said = [];
  if (gaps.own_pid_namespace === true) {
    said.push("This host's probe runs in a PID namespace of its own (a container's): the processes shown are " +
      "that container's, not the host's. Run it in the host's (Kubernetes hostPID, docker --pid=host).");
  }
  if (gaps.own_network_namespace === true) {
    said.push("This host's probe runs in a network namespace of its own: the host's addresses shown are its " +
      "own namespace's. Run it in the host's (Kubernetes hostNetwork, docker --network=host).");
  }
  const sockets = count(gaps.unowned_sockets);
  if (sockets) {
    said.push(`${sockets} ${sockets === 1 ? "socket" : "sockets"} of this host came without ` +
      `${sockets === 1 ? "its process" : "their processes"}: the probe may not read other processes' ` +
      `file descriptors, so connections between local processes are missing. To see them, ${GRANT}.`);
  }
  const threads = count(gaps.hidden_threads);
  if (threads) {
    said.push(`${threads} ${threads === 1 ? "thread of this host runs" : "threads of this host run"} in ` +
      "processes hidden from its probe " +
      "(/proc mounted hidepid, systemd ProtectProc=invisible). To see them, run the probe as root, in " +
      "hidepid's gid= group, or with ProtectProc=default.");
  }
  const sources = Array.isArray(gaps.unreadable) ? gaps.unreadable.filter((s) => typeof s === "string") : [];
  if (sources.length) {
    // A rate's source read once (at the probe's start, or after it was unreadable) is listed too: no
    // rate yet, nothing in the probe's log.
    said.push(`This host's probe could not read or measure its ${sources.map(visible).join(", ")}: left out of ` +
      "its report (if unreadable, its log says why; a rate needs two readings in a row).");
  }
  return said;
}
