// Runs costly work (drawing the view) at most once per animation frame, and
// never sooner after its last run than that run took: while a run is slow
// (150,000 processes take seconds to draw), the changes that come meanwhile are
// applied to the model as they arrive and drawn together by the next run, and
// at least half of the main thread's time is left to reading the socket (a
// page that draws every diff falls behind the server, which then closes it).
// The clock and the schedulers are parameters so that tests can drive it.

export class Pacer {
  constructor(work, { now = () => performance.now(), frame = (f) => requestAnimationFrame(f),
    later = (f, ms) => setTimeout(f, ms) } = {}) {
    Object.assign(this, { work, now, frame, later });
    this.scheduled = false; // a run is waiting for its time or its frame
    this.running = false;
    this.again = false; // asked for while running: another run once this one is done
    this.ticket = 0; // a scheduled run whose ticket is no longer current was overtaken by runNow
    this.lastEnd = -Infinity;
    this.lastCost = 0;
    this.runs = 0;
  }

  // The work is to be done: in the next frame, or once the last run's cost has passed.
  request() {
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    const ticket = this.ticket;
    const inFrame = () => this.frame(() => {
      if (ticket === this.ticket) this.runNow();
    });
    const wait = this.lastEnd + this.lastCost - this.now();
    if (wait > 0) this.later(inFrame, wait);
    else inFrame();
  }

  // The work, now (whatever was scheduled is done by this run).
  runNow() {
    this.ticket += 1;
    this.scheduled = false;
    this.running = true;
    const started = this.now();
    try {
      this.work();
    } finally {
      const ended = this.now();
      this.running = false;
      this.lastCost = ended - started;
      this.lastEnd = ended;
      this.runs += 1;
      if (this.again) {
        this.again = false;
        this.request();
      }
    }
  }
}

// Asks for `work` at most once every `every` ms however often it is asked for:
// for changes worth showing but not at each version (the sizes of the nodes, when
// the graph sizes them by a metric that changes on most nodes at each version: a
// redraw of the All view at each of them locked the page). `done()` says the work
// was just done by other means (a render for another change): what was waiting is
// dropped, and the next one waits `every` from there.
export class Throttle {
  constructor(work, every, { now = () => performance.now(), later = (f, ms) => setTimeout(f, ms),
    cancel = (timer) => clearTimeout(timer) } = {}) {
    Object.assign(this, { work, every, now, later, cancel });
    this.last = -Infinity;
    this.timer = null;
  }

  request() {
    if (this.timer !== null) return;
    const wait = this.last + this.every - this.now();
    if (wait <= 0) this.#run();
    else this.timer = this.later(() => this.#run(), wait);
  }

  done() {
    this.last = this.now();
    if (this.timer !== null) this.cancel(this.timer);
    this.timer = null;
  }

  #run() {
    this.timer = null;
    this.last = this.now();
    this.work();
  }
}
