// Active alerts: the system_alert events of /ws/user (the server's own rules,
// Alertmanager's webhook), firing until their "resolved" event arrives. A
// notice without a fingerprint (a command timed out) stays until dismissed.
// Each time the socket (re)connects, GET /api/v1/alerts says what fires now
// (alerts that fired before the page opened, or while it was away).

import { api } from "./api.js";
import { el } from "./dom.js";
import { visible } from "./format.js";

const KEEP = 50; // alerts shown at most (the oldest go first)

export class AlertList {
  constructor(root) {
    this.root = root;
    this.list = root.querySelector("ul");
    this.active = new Map(); // fingerprint -> event
    this.notices = 0;
    this.during = null; // events that came while a refresh was under way
  }

  // Every /ws/user event comes here; only system_alert ones matter.
  event(message) {
    if (message.type !== "system_alert") return;
    if (this.during) this.during.push(message);
    this.#apply(message);
    this.#paint();
  }

  // What fires now, from the server; events that arrive meanwhile are newer and win.
  async refresh() {
    const during = (this.during = []);
    let found;
    try {
      found = await api("/api/v1/alerts");
    } catch (error) {
      console.warn(`trioscope: could not read the active alerts: ${error.message}`);
      return;
    } finally {
      if (this.during === during) this.during = null;
    }
    const notices = [...this.active].filter(([key]) => key.startsWith("notice-"));
    this.active = new Map(notices);
    for (const alert of found.alerts) this.#apply(alert);
    for (const message of during) this.#apply(message);
    this.#paint();
  }

  #apply(message) {
    const key = message.fingerprint || `notice-${++this.notices}`;
    if (message.status === "resolved") this.active.delete(key);
    else this.active.set(key, message);
    while (this.active.size > KEEP) this.active.delete(this.active.keys().next().value);
  }

  // Signed out (or in as someone else): their alerts are not ours.
  clear() {
    this.active.clear();
    this.#paint();
  }

  #paint() {
    this.list.replaceChildren(...[...this.active].reverse().map(([key, alert]) => el("li", {
      class: `alert severity-${alert.severity === "critical" ? "critical" : "warning"}`,
      "data-fingerprint": key,
      "data-alert": alert.alert || "notice",
    },
    el("b", { text: visible(alert.alert || "notice") }),
    el("span", { class: "alert-message", text: visible(alert.message) }),
    alert.starts_at ? el("time", { class: "muted", datetime: alert.starts_at, text: `since ${visible(alert.starts_at)}` }) : null,
    el("button", { type: "button", class: "dismiss", "aria-label": "Dismiss", text: "×",
      onclick: () => { this.active.delete(key); this.#paint(); } }))));
    this.root.hidden = this.active.size === 0;
    this.root.dataset.count = String(this.active.size);
  }
}
