// A WebSocket that comes back: reconnects with exponential backoff and jitter
// (0.5 s doubling to 15 s, reset once a connection has lasted 10 s), answers
// the server's pings, and reports its state: connecting, live, reconnecting
// (with the seconds, and milliseconds, until the next try and how many tries
// in a row failed to open) or closed. A close with 4401 (the
// token it was opened with expired) ends the session instead: "signed-out".

import { events } from "./api.js";

const TOKEN_EXPIRED = 4401;

const FIRST_DELAY = 500, MAX_DELAY = 15000, STABLE_AFTER = 10000;

export class ReconnectingSocket {
  // url: a string, or a function giving the URL for each new connection;
  // protocols: subprotocols to offer (a function, called for each connection).
  constructor(url, { onMessage, onOpen, onState, protocols }) {
    this.url = url;
    this.protocols = protocols || (() => []);
    this.onMessage = onMessage;
    this.onOpen = onOpen || (() => {});
    this.onState = onState || (() => {});
    this.delay = FIRST_DELAY;
    this.failures = 0; // attempts in a row that never opened (refused: 429, 503, or unreachable)
    this.socket = null;
    this.timer = null;
    this.closed = false;
    this.#connect();
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000, "bye");
    this.onState("closed");
  }

  #connect() {
    this.onState("connecting", { failures: this.failures }); // a try after failed ones is still refused
    const socket = new WebSocket(typeof this.url === "function" ? this.url() : this.url, this.protocols());
    this.socket = socket;
    let opened = 0;
    socket.addEventListener("open", () => {
      opened = Date.now();
      this.failures = 0;
      this.onState("live");
      this.onOpen();
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        console.warn("trioscope: a frame that is not JSON was ignored");
        return;
      }
      if (message.type === "ping") {
        this.send({ type: "pong" });
        return;
      }
      this.onMessage(message);
    });
    socket.addEventListener("close", (event) => {
      if (this.closed || this.socket !== socket) return;
      if (event.code === TOKEN_EXPIRED) {
        this.close();
        events.dispatchEvent(new CustomEvent("signed-out"));
        return;
      }
      if (opened && Date.now() - opened >= STABLE_AFTER) this.delay = FIRST_DELAY;
      if (!opened) this.failures += 1;
      const wait = Math.round(this.delay * (0.75 + Math.random() * 0.5));
      this.delay = Math.min(this.delay * 2, MAX_DELAY);
      this.onState("reconnecting", { seconds: Math.ceil(wait / 1000), delayMs: wait, code: event.code,
        reason: event.reason, failures: this.failures });
      this.timer = setTimeout(() => this.#connect(), wait);
    });
  }
}
