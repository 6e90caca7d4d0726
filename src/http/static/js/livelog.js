// The live log of a container, in its details: "Follow" creates a docker.logs
// command with follow (the server streams the lines the probe sends as
// log_entry events on /ws/user) and shows lines as they arrive; unticking it,
// closing the details, choosing another node or leaving the page stops it
// (the command is cancelled). The server ends it too at its time or volume
// limit, and the command's completion says why.

import { ApiError, api, token } from "./api.js";
import { el } from "./dom.js";
import { visible, visibleShort } from "./format.js";

const MAX_LINES = 500; // lines kept on screen; older ones scroll away
const MAX_EARLY = 200; // lines that arrive before the command's POST has answered
const TAIL = 20; // lines of history shown when a follow starts

export class LiveLog {
  constructor() {
    this.nodeId = "";
    this.section = null;
    this.follow = null; // {id, user_id, deployment_hash} once created; {pending: true} while the POST runs
    this.early = [];
  }

  // The section for `node` (the same element while the same node is shown,
  // so a refresh of the details keeps the lines).
  render(node) {
    if (this.section && this.nodeId === node.id) return this.section;
    this.stop();
    this.nodeId = node.id;
    this.label = node.label;
    this.toggle = el("input", { type: "checkbox", "data-follow": "", onchange: () => this.#toggled() });
    // Read out as it changes (following, stopped, ended and why, a refusal).
    this.state = el("span", { class: "muted", "data-follow-state": "idle", role: "status", text: "" });
    this.lines = el("pre", { class: "live-log", "data-live-log": "" });
    this.section = el("section", { class: "live-log-section" },
      el("h3", { text: "Live log" }),
      el("p", { class: "live-log-follow" }, el("label", {}, this.toggle, " Follow"), " ", this.state),
      this.lines);
    return this.section;
  }

  // The details closed or show another node.
  leave() {
    this.stop();
    this.section = null;
    this.nodeId = "";
  }

  // Every /ws/user event.
  event(message) {
    if (!this.follow) return;
    if (message.type === "log_entry") {
      if (this.follow.pending) {
        if (this.early.length < MAX_EARLY) this.early.push(message);
      } else if (message.command_id === this.follow.id) {
        this.#append(message);
      }
    } else if (message.type === "command_completed" && message.command_id === this.follow.id) {
      const ended = (message.result && message.result.ended) || message.error || message.status;
      this.follow = null;
      this.toggle.checked = false;
      // The agent's words: escaped and cut as every text it sends is (up to 64 KB here).
      this.#say("ended", `ended: ${visibleShort(typeof ended === "string" ? ended : JSON.stringify(ended), 200)}`);
    }
  }

  // Stop following (keepalive: it still reaches the server when the page is closing).
  stop() {
    const follow = this.follow;
    this.follow = null;
    this.early = [];
    if (this.toggle) this.toggle.checked = false;
    if (!follow || follow.pending) {
      if (follow) follow.cancelled = true;
      return;
    }
    this.#say("stopped", "stopped");
    this.#cancel(follow);
  }

  async #toggled() {
    if (!this.toggle.checked) {
      this.stop();
      return;
    }
    // Its cancel goes out with the token it was started with: signing out
    // stops the follow after the token is gone (it went out unsigned, 401,
    // and the follow held one of its user's places until its time limit).
    const follow = { pending: true, token: token() };
    this.follow = follow;
    this.early = [];
    this.lines.replaceChildren();
    this.#say("starting", "starting…");
    try {
      const created = await api(`/api/v1/query/nodes/${encodeURIComponent(this.nodeId)}/controls/logs`, {
        method: "POST", body: { parameters: { follow: true, tail: TAIL }, timeout_seconds: 3600 },
      });
      const started = { id: created.command_id, user_id: created.user_id, deployment_hash: created.deployment_hash,
        token: follow.token };
      if (follow.cancelled || this.follow !== follow) {
        this.#cancel(started); // stopped while the POST ran
        return;
      }
      this.follow = started;
      for (const message of this.early) if (message.command_id === started.id) this.#append(message);
      this.early = [];
      this.#say("following", "following");
    } catch (error) {
      if (this.follow === follow) this.follow = null;
      this.toggle.checked = false;
      this.#say("failed", visibleShort(error instanceof ApiError ? error.message : String(error), 200));
    }
  }

  #cancel(follow) {
    const path = `/api/v1/users/${encodeURIComponent(follow.user_id)}/deployments/${follow.deployment_hash}/commands/${follow.id}/cancel`;
    api(path, { method: "POST", keepalive: true, withToken: follow.token }).catch((error) => {
      // Already finished (409) is what a stop at the end looks like.
      if (!(error instanceof ApiError && error.status === 409)) console.warn(`trioscope: could not stop the follow: ${error.message}`);
    });
  }

  #append(entry) {
    const time = new Date(entry.timestamp).toLocaleTimeString();
    this.lines.append(el("div", { class: `log-line ${entry.source}`, "data-source": entry.source,
      text: `${time} ${visible(entry.message)}` }));
    while (this.lines.childElementCount > MAX_LINES) this.lines.firstElementChild.remove();
    this.lines.scrollTop = this.lines.scrollHeight;
  }

  #say(state, text) {
    this.state.dataset.followState = state;
    this.state.textContent = text;
  }
}
