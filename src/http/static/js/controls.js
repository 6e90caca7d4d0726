// Container controls: the buttons a container's state allows (the server puts
// them on the node), each creating a command through the API, and the
// progress of those commands as /ws/user reports it. Logs, exec and inspect
// show their output when the probe reports the result; "Follow" (livelog.js)
// shows a running container's log live.

import { ApiError, api, socketUrl, tokenProtocols } from "./api.js";
import { el } from "./dom.js";
import { NO_CONTROLS_STALE, stale } from "./engine.js";
import { visible, visibleLines, visibleShort } from "./format.js";
import { LiveLog } from "./livelog.js";
import { ReconnectingSocket } from "./socket.js";

const TERMINAL = new Set(["completed", "failed", "cancelled", "expired"]);
const WITH_OUTPUT = new Set(["logs", "exec", "inspect"]);
const KEEP = 30; // commands remembered per page

export class Controls {
  constructor({ confirm, output, onEvent = () => {}, onConnect = () => {}, announce = () => {} }) {
    this.confirm = confirm;
    this.announce = announce; // a command's state, read out when it changes (the list is not a live region: it is rebuilt)
    this.output = output;
    this.onEvent = onEvent; // every /ws/user event (alerts are listed elsewhere)
    this.onConnect = onConnect; // /ws/user (re)connected: what was missed is read again
    this.principal = null;
    this.commands = new Map(); // command id -> {id, action, node, label, status, ...}
    this.list = null;
    this.listNode = "";
    this.events = null;
    this.early = new Map(); // events of commands whose POST has not answered yet
    this.liveLog = new LiveLog();
  }

  setPrincipal(principal) {
    this.liveLog.leave();
    if (this.events) this.events.close();
    this.events = null;
    // Another user (or none) from here: nothing of the last one's commands stays, shown or held.
    this.commands = new Map();
    this.early = new Map();
    this.#paintList();
    this.principal = principal;
    if (!principal) return;
    this.events = new ReconnectingSocket(socketUrl(`/ws/user/${encodeURIComponent(principal.user_id)}`), {
      protocols: tokenProtocols,
      onMessage: (message) => this.#event(message),
      onOpen: () => { this.onConnect(); this.#catchUp(); },
    });
  }

  get mayOperate() {
    return Boolean(this.principal && this.principal.permissions.includes("operate"));
  }

  // The controls section of a container's details: null for those who may not
  // control it (viewers; operators of another deployment or tenant: the server
  // says, in details.controllable, and lists the controls they may run).
  render(node, details = {}) {
    if (!this.mayOperate) return null;
    this.list = null;
    if (!(node.metadata && Array.isArray(node.metadata.controls))) {
      // Unsigned reports' containers: no enrolled agent to send a control to.
      return el("section", { class: "controls-section" },
        el("h3", { text: "Controls" }),
        el("p", { class: "muted", text: "No controls: no probe enrolled in a deployment reported this container." }));
    }
    if (!details.controllable) return null;
    const offered = details.controls || [];
    this.list = el("ul", { class: "commands" });
    this.listNode = node.id;
    this.#paintList();
    return el("section", { class: "controls-section" },
      el("h3", { text: "Controls" }),
      offered.length
        ? el("div", { class: "controls" }, offered.map((control) => el("button", {
          type: "button", "data-control": control.id, text: control.label,
          onclick: () => this.#run(node, control),
        })))
        // A container as last known offers none (the server says so: a control is refused 409): why.
        : el("p", { class: "muted", "data-no-controls": stale(node) ? "stale" : "state",
          text: stale(node) ? NO_CONTROLS_STALE : "No controls in this state." }),
      this.list,
      offered.some((control) => control.id === "logs") ? this.liveLog.render(node) : null);
  }

  // The details closed or show another node: a live log stops.
  leave() {
    this.liveLog.leave();
  }

  async #run(node, control, parameters = {}) {
    if (control.id === "exec") {
      const line = await this.confirm({ title: `Run a command in ${visible(node.label)}`, text: "", input: "", action: "Run" });
      if (line === null) return;
      const argv = line.trim().split(/\s+/).filter(Boolean);
      if (!argv.length) return;
      parameters = { argv };
    } else if (control.confirm) {
      const ok = await this.confirm({ title: `${control.label} ${visible(node.label)}?`, text: `This sends docker ${control.id} to the container's host.`,
        action: `${control.label} ${visible(node.label)}` });
      if (ok === null) return;
    }
    if (control.id === "logs") parameters = { tail: 200, ...parameters };
    try {
      const created = await api(`/api/v1/query/nodes/${encodeURIComponent(node.id)}/controls/${encodeURIComponent(control.id)}`,
        { method: "POST", body: { parameters } });
      this.#remember({ ...created, id: created.command_id, action: control.id, node: node.id, label: visible(node.label), parameters });
    } catch (error) {
      const text = error instanceof ApiError ? `${control.label}: ${error.message}` : String(error);
      this.#remember({ id: `error-${Date.now()}`, action: control.id, node: node.id, label: visible(node.label), status: "failed", error: text });
    }
  }

  #remember(command) {
    this.commands.set(command.id, command);
    while (this.commands.size > KEEP) this.commands.delete(this.commands.keys().next().value);
    this.#paintList();
    this.#announce(command);
    const early = this.early.get(command.id);
    if (early) {
      this.early.delete(command.id);
      for (const message of early) this.#update(command, message);
    }
  }

  #event(message) {
    this.onEvent(message);
    this.liveLog.event(message);
    if (message.type !== "command_progress" && message.type !== "command_completed") return;
    const command = this.commands.get(message.command_id);
    if (command) {
      this.#update(command, message);
      return;
    }
    // A fast probe can finish before our POST has its answer: keep the news for a moment.
    if (!this.early.has(message.command_id)) this.early.set(message.command_id, []);
    this.early.get(message.command_id).push(message);
    while (this.early.size > KEEP) this.early.delete(this.early.keys().next().value);
  }

  #update(command, { status, result, error, progress, result_truncated: cut, error_truncated: errorCut }) {
    if ((cut || errorCut) && command.user_id && command.deployment_hash) {
      // Too large for an event: the command's own GET has it (up to 1 MiB).
      this.#refetch(command);
      return;
    }
    const was = command.status;
    Object.assign(command, { status, result: result ?? command.result, error: error ?? command.error });
    if (typeof progress === "number") command.percent = progress;
    else if (progress && typeof progress.percent === "number") command.percent = progress.percent;
    this.#paintList();
    if (command.status !== was) this.#announce(command); // not each percent of its progress
    if (status === "completed" && was !== "completed" && WITH_OUTPUT.has(command.action)) this.#showOutput(command);
  }

  async #refetch(command) {
    try {
      const path = `/api/v1/users/${encodeURIComponent(command.user_id)}/deployments/${command.deployment_hash}/commands/${command.id}`;
      const found = await api(path);
      this.#update(command, { ...found, result_truncated: false, error_truncated: false });
    } catch (error) {
      console.warn(`trioscope: could not read command ${command.id}: ${error.message}`);
    }
  }

  // After a (re)connection: events missed while away are read from the API.
  async #catchUp() {
    for (const command of this.commands.values()) {
      if (TERMINAL.has(command.status) || !command.deployment_hash) continue;
      try {
        const path = `/api/v1/users/${encodeURIComponent(command.user_id)}/deployments/${command.deployment_hash}/commands/${command.id}`;
        const found = await api(path);
        this.#update(command, found);
      } catch (error) {
        console.warn(`trioscope: could not read command ${command.id}: ${error.message}`);
      }
    }
  }

  #showOutput(command) {
    const result = command.result || {};
    const text = command.action === "inspect" ? visibleLines(JSON.stringify(result, null, 2))
      : `${visibleLines(result.output ?? "")}${result.truncated ? `\n… cut at ${visible(result.bytes)} bytes` : ""}`;
    const title = command.action === "logs" ? `Logs of ${command.label}`
      : command.action === "exec" ? `${visible((command.parameters.argv || []).join(" "))} in ${command.label} (exit ${visible(result.exit_code)})`
        : `Inspect ${command.label}`;
    const node = command.node;
    const again = command.action === "logs"
      ? () => this.#run({ id: node, label: command.label }, { id: "logs", label: "Logs" }) : null;
    this.output({ title, text, refresh: again });
  }

  #announce(command) {
    this.announce(`${command.action} ${command.label}: ${describe(command)}`);
  }

  #paintList() {
    if (!this.list) return;
    const mine = [...this.commands.values()].filter((c) => c.node === this.listNode).reverse();
    this.list.replaceChildren(...mine.map((c) => el("li", { "data-command": c.id, "data-status": c.status },
      el("span", { text: c.action }),
      el("span", { class: `state-${c.status}`, text: describe(c) }))));
  }
}

// An error is the agent's text, up to 1 MiB: a line of the list shows its start
// (300,000 characters made one item 126,914 px tall).
const ERROR_SHOWN = 300;

function describe(command) {
  if (command.status === "failed" && command.error) return `failed: ${visibleShort(command.error, ERROR_SHOWN)}`;
  if (command.status === "executing" && typeof command.percent === "number") return `executing ${command.percent}%`;
  return command.status || "sending";
}
