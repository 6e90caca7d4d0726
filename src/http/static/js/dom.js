// Building DOM from data without ever parsing it as HTML: every text a probe
// sent goes in through textContent.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

// Has a live region (role=status) read `text` out: the same text again too
// (a changed text is what is read).
export function say(region, text) {
  region.textContent = region.textContent === text ? `${text}\u00A0` : text;
}

// A selector for the control `element` is, that finds its equivalent after
// the part of the page it is in was built again (the details refresh every
// few seconds, new buttons each time): null for one without a stable key.
export function stableKey(element) {
  if (!element || !element.dataset) return null;
  const data = element.dataset;
  if (data.control) return `[data-control="${CSS.escape(data.control)}"]`;
  if ("follow" in data) return "[data-follow]";
  const list = element.closest("[data-list]");
  if (data.node && list) return `[data-list="${CSS.escape(list.dataset.list)}"] [data-node="${CSS.escape(data.node)}"]`;
  if (element.id) return `#${CSS.escape(element.id)}`;
  return null;
}

// Focus goes back to the element that had it when `dialog` opened, or, if that
// one was replaced meanwhile, to its equivalent (the browser gives it back only
// to an element still in the page: otherwise it fell to <body>).
export function returnFocusAfter(dialog) {
  const opener = document.activeElement;
  const key = stableKey(opener);
  dialog.addEventListener("close", () => {
    if (!opener || opener.isConnected || !key) return;
    const again = document.querySelector(key);
    if (again) again.focus();
  }, { once: true });
}

const SVG = "http://www.w3.org/2000/svg";

// How far apart two samples of `times` (seconds, ascending) may be and still
// be joined by a line: twice their usual spacing (the median), and at least
// twice `least` (the series' resolution). A writer or probe every 30 or 60 s
// was drawn as lone dots against a fixed two buckets, as if it flapped; a gap
// of several of its own intervals stays a gap.
export function joinWithin(times, least) {
  const gaps = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
  const usual = gaps.length ? gaps[Math.floor(gaps.length / 2)] : least;
  return 2 * Math.max(least, usual);
}

// A sparkline of `samples`, [unix seconds, value] pairs oldest first, laid
// out by their time over the window `start`..`end` (seconds): x is time, so a
// stretch without samples takes the width it lasted. The line breaks where
// two samples are more than `maxStep` seconds apart (the series had none in
// between: its probe was down, its container stopped) and at a value that is
// not a number; a lone sample between breaks is a dot. Empty for fewer than
// two samples. One pass over the samples: it is drawn again at each refresh.
export function sparkline(samples, { start, end, maxStep = Infinity, width = 120, height = 24 }) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true"); // a picture of the value written beside it
  const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
  let count = 0, low = Infinity, high = -Infinity;
  for (const [, v] of samples) {
    if (!isNumber(v)) continue;
    count += 1;
    if (v < low) low = v;
    if (v > high) high = v;
  }
  const runs = [];
  if (count >= 2) {
    const span = high - low || 1;
    const scale = width / (end - start || 1);
    let run = null, last = -Infinity;
    for (const [t, v] of samples) {
      if (!isNumber(v)) {
        run = null;
        continue;
      }
      if (!run || t - last > maxStep) runs.push((run = []));
      last = t;
      const x = (t - start) * scale, y = height - 2 - ((v - low) / span) * (height - 4);
      run.push(`${x.toFixed(1)},${y.toFixed(1)}`);
    }
    for (const points of runs) {
      if (points.length === 1) points.push(points[0]); // round caps make it a dot
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", points.join(" "));
      svg.append(line);
    }
  }
  svg.dataset.points = String(count);
  svg.dataset.runs = String(runs.length); // lines drawn: one more per gap
  return svg;
}
