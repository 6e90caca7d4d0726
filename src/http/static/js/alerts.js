// Active alerts: the system_alert events of /ws/user (the server's own rules,
// Alertmanager's webhook), firing until their "resolved" event arrives. A
// notice without a fingerprint (a command timed out) stays until dismissed.
// Each time the socket (re)connects, GET /api/v1/alerts says what fires now
// (alerts that fired before the page opened, or while it was away).

import { api } from "./api.js";
import { el } from "./dom.js";
import { localTime, visible, visibleShort } from "./format.js";

const KEEP = 50; // alerts shown at most (the oldest go first)
const SAID = 3; // new alerts read out one by one; more at once are counted

export class AlertList {
  // announce(text): read out by screen readers (the alerts that newly fire; the
  // list is no live region: it read every alert again at each change).
  constructor(root, { announce = () => {} } = {}) {
    this.root = root;
    this.announce = announce;
    this.list = root.querySelector("ul");
    this.items = new Map(); // fingerprint -> its <li>, kept while it fires (a focused Dismiss keeps the focus)
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
    const focused = this.list.contains(document.activeElement) ? document.activeElement.closest("li").dataset.fingerprint : null;
    const had = this.items;
    this.items = new Map();
    const fresh = [];
    for (const [key, alert] of [...this.active].reverse()) { // newest first
      const item = had.get(key) || this.#item(key);
      if (!had.has(key)) fresh.push(alert);
      this.#fill(item, alert);
      this.items.set(key, item);
    }
    for (const [key, item] of had) if (!this.items.has(key)) item.remove();
    // Only the items that came, or changed places (a refresh), are (re)inserted.
    [...this.items.values()].forEach((item, i) => {
      if (this.list.children[i] !== item) this.list.insertBefore(item, this.list.children[i] || null);
    });
    const again = focused && this.items.get(focused);
    if (again && !this.list.contains(document.activeElement)) again.querySelector(".dismiss").focus();
    this.root.hidden = this.active.size === 0;
    this.root.dataset.count = String(this.active.size);
    if (fresh.length) this.announce(fresh.length > SAID ? `${fresh.length} alerts firing; the newest: ${said(fresh[0])}`
      : fresh.map(said).join(" "));
  }

  #item(key) {
    return el("li", { "data-fingerprint": key },
      el("b"), " ", el("span", { class: "severity" }), el("span", { class: "alert-message" }), el("time", { class: "muted" }),
      el("button", { type: "button", class: "dismiss", text: "×", onclick: () => this.#dismiss(key) }));
  }

  // The texts of an alert's item, in place (a repeated firing changes no element).
  #fill(item, alert) {
    const critical = alert.severity === "critical";
    item.className = `alert severity-${critical ? "critical" : "warning"}`;
    item.dataset.alert = alert.alert || "notice";
    const [name, , severity, message, time, dismiss] = item.childNodes;
    name.textContent = visible(alert.alert || "notice");
    severity.textContent = critical ? "critical" : "warning";
    message.textContent = visible(alert.message);
    time.hidden = !alert.starts_at;
    time.dateTime = alert.starts_at || "";
    time.textContent = alert.starts_at ? `since ${localTime(alert.starts_at)}` : ""; // the <time>'s datetime: as sent
    dismiss.setAttribute("aria-label", `Dismiss ${visible(alert.alert || "notice")}: ${visibleShort(alert.message, 80)}`);
  }

  // The focus goes to the next alert's Dismiss (the previous one's after the
  // last), or to the view once none is left: not to <body>.
  #dismiss(key) {
    const keys = [...this.items.keys()];
    const at = keys.indexOf(key);
    const next = keys[at + 1] ?? keys[at - 1];
    this.active.delete(key);
    this.#paint();
    const target = next && this.items.get(next) ? this.items.get(next).querySelector(".dismiss") : document.querySelector("main");
    target.focus();
  }
}

function said(alert) {
  return `${alert.severity === "critical" ? "Critical" : "Warning"} alert ${visible(alert.alert || "notice")}: ${visible(alert.message)}.`;
}
