// The details panel's chart of any one series of the node from the metrics
// API (the Prometheus HTTP API under /prometheus, within the user's tenant).
// A node's series are those of the probe that reports it (label agent_id:
// the trioscope_node_* host metrics) and, when that probe is enrolled in a
// deployment, those of the deployment (label deployment_hash, which the host
// metrics carry too: what the deployment's agent writes). The one chosen is
// drawn over the history window with query_range, again at each refresh of
// the panel. The section is one element the panel keeps in place, so a
// refresh never closes the picker under the user's hand.

import { api } from "./api.js";
import { el, joinWithin, sparkline } from "./dom.js";
import { metricValue, visible } from "./format.js";
import { exactSelector, quote, sameLabels, seriesKey, seriesLabel, sortSeries, valuesOnGrid } from "./promql.js";

const WINDOW_S = 900; // the history window, as the panel's own sparklines (details.js: HISTORY_S)
const STEP_S = 15; // the metrics' resolution
const MAX_SERIES = 500; // options listed at most (a deployment may write thousands)
const BASE = "/prometheus/api/v1";

export class SeriesChart {
  constructor() {
    this.picker = el("select", { "aria-label": "Series of this node", onchange: () => this.#chose() });
    this.chart = el("div", { class: "metric series-chart" });
    this.status = el("p", { class: "muted series-status", role: "status" });
    this.heading = el("h3", { text: "Metrics API series" });
    this.root = el("section", { class: "series", "data-state": "idle" }, this.heading, this.picker, this.chart,
      this.status);
    this.agent = ""; // the probe whose node is shown
    this.hashes = new Map(); // probe -> the deployment its series named
    this.series = []; // the node's series, as the picker lists them
    this.choice = ""; // seriesKey of the chosen one: kept from node to node
    this.abort = null;
  }

  // Lists the series of the node `agentId` reports (and of `deploymentHash`,
  // its probe's deployment when the server names it) and draws the chosen one
  // (again, when the panel refreshes). Never throws: failures are shown.
  async refresh(agentId, deploymentHash = "") {
    this.stop();
    if (agentId !== this.agent) {
      this.agent = agentId || "";
      this.series = [];
      this.heading.textContent = "Metrics API series";
      this.picker.replaceChildren();
      this.chart.replaceChildren();
      this.#state("loading", "loading the series…");
    }
    if (!this.agent) return this.#state("empty", "No probe reports this node: it has no series.");
    if (deploymentHash) this.hashes.set(this.agent, deploymentHash); // also where no host series are kept
    const abort = (this.abort = new AbortController());
    try {
      let found = await this.#list(abort.signal);
      // The deployment as the server's own series of the probe name it (a
      // writer's labels could say anything; a probe moved to another
      // deployment leaves written series of the old one behind).
      const hash = found.filter((labels) => labels.agent_id === this.agent && /^trioscope_node_/.test(labels.__name__))
        .map((labels) => labels.deployment_hash).find(Boolean);
      if (hash && this.hashes.get(this.agent) !== hash) { // enrolled (or moved): its deployment's series too
        this.hashes.set(this.agent, hash);
        found = await this.#list(abort.signal);
      }
      this.#fill(found);
      await this.#draw(abort.signal);
    } catch (error) {
      if (error.name !== "AbortError") this.#failed(error);
    }
  }

  stop() {
    if (this.abort) this.abort.abort();
    this.abort = null;
  }

  async #list(signal) {
    const end = Math.floor(Date.now() / 1000);
    const params = new URLSearchParams({ start: String(end - WINDOW_S), end: String(end) });
    params.append("match[]", `{agent_id=${quote(this.agent)}}`);
    const hash = this.hashes.get(this.agent);
    if (hash) params.append("match[]", `{deployment_hash=${quote(hash)}}`);
    const answer = await api(`${BASE}/series?${params}`, { signal });
    return (answer && answer.data) || [];
  }

  #fill(found) {
    this.series = sortSeries(found).slice(0, MAX_SERIES);
    // A container's or a process's series are its host's: say whose they are.
    const host = found.map((labels) => labels.hostname).find(Boolean);
    this.heading.textContent = host ? `Metrics API series of ${visible(host)}` : "Metrics API series";
    this.root.dataset.count = String(found.length);
    if (!this.series.length) {
      this.picker.replaceChildren();
      this.chart.replaceChildren();
      return this.#state("empty", "No series of this node in the metrics API (none in the last 15 minutes).");
    }
    const keys = this.series.map(seriesKey);
    const shown = [...this.picker.options].slice(1).map((o) => o.value);
    if (shown.join("\n") !== keys.join("\n")) { // rebuilt only when the list changed
      this.picker.replaceChildren(new Option("choose a series…", ""),
        ...this.series.map((labels, i) => new Option(visible(seriesLabel(labels)), keys[i])));
    }
    this.picker.value = keys.includes(this.choice) ? this.choice : "";
    this.#state(this.picker.value ? "loading" : "listed",
      found.length > MAX_SERIES ? `The first ${MAX_SERIES} of ${found.length} series are listed.` : "");
  }

  #chose() {
    this.choice = this.picker.value;
    this.stop();
    const abort = (this.abort = new AbortController());
    this.chart.replaceChildren();
    this.#state(this.choice ? "loading" : "listed", "");
    this.#draw(abort.signal).catch((error) => {
      if (error.name !== "AbortError") this.#failed(error);
    });
  }

  async #draw(signal) {
    const index = this.series.findIndex((labels) => seriesKey(labels) === this.choice);
    if (index < 0) {
      this.chart.replaceChildren();
      return;
    }
    const labels = this.series[index];
    // Labels the node's other series have and this one lacks: matched as
    // absent, so the query is this series alone.
    const absent = this.series.flatMap((other) => Object.keys(other));
    // On a grid that refreshes share, its last step at or just after now (so the newest sample is in).
    const end = Math.ceil(Date.now() / 1000 / STEP_S) * STEP_S;
    const start = end - WINDOW_S;
    // Each step's own sample only (last_over_time over a step): a bare selector
    // looks back 5 minutes, so a silent writer's last value was drawn on
    // through its outage, as if it were still reported.
    const query = `last_over_time(${exactSelector(labels, absent)}[${STEP_S}s])`;
    const params = new URLSearchParams({ query, start: String(start), end: String(end), step: String(STEP_S) });
    const answer = await api(`${BASE}/query_range?${params}`, { signal });
    const result = ((answer && answer.data && answer.data.result) || []);
    const found = result.find((r) => sameLabels(r.metric || {}, labels)) || result[0];
    const values = valuesOnGrid(found ? found.values : [], start, end, STEP_S);
    const latest = [...values].reverse().find((v) => v !== null);
    // The steps holding a sample: a step without one breaks the line only
    // where it is a gap of the series' own pace (joinWithin).
    const points = values.map((v, i) => [start + i * STEP_S, v]).filter(([, v]) => v !== null);
    const joined = joinWithin(points.map(([t]) => t), STEP_S);
    const name = labels.__name__ || "";
    this.chart.dataset.series = seriesKey(labels);
    const shown = visible(seriesLabel(labels));
    this.chart.replaceChildren(
      el("span", { class: "series-name", text: shown, title: shown }),
      sparkline(points, { start, end, maxStep: joined }),
      el("span", { class: "value", text: latest === undefined ? "–" : metricValue(name, latest) }));
    if (latest === undefined) this.#state("no-data", "This series has no samples in the last 15 minutes.");
    else this.#state("drawn", "");
  }

  #failed(error) {
    this.chart.replaceChildren();
    this.root.dataset.status = String(error.status);
    if (error.status === 422) {
      this.#state("refused", `The metrics engine cannot answer this query: ${error.message}`);
    } else if (error.status === 401) {
      // Our own 401 signs the user out (api.js); one in the Prometheus shape is the engine's.
      this.#state("unauthorized", error.prometheus
        ? `The metrics engine refused the request: ${error.message}`
        : "Your session ended: sign in again to read the metrics API.");
    } else if (error.status === 403) {
      this.#state("error", `You may not read the metrics API: ${error.message}`);
    } else {
      this.#state("error", `Could not read the metrics API: ${error.message}`);
    }
  }

  #state(state, text) {
    this.root.dataset.state = state;
    if (state !== "refused" && state !== "unauthorized" && state !== "error") delete this.root.dataset.status;
    this.picker.hidden = !this.series.length;
    this.status.textContent = text;
    this.status.hidden = !text;
    this.status.className = ["refused", "unauthorized", "error"].includes(state) ? "error series-status" : "muted series-status";
  }
}
