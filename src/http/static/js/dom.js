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

// A sparkline of `values` (oldest first); empty for fewer than two points.
// With `gaps`, a value that is not a number breaks the line (a step the
// series had no sample at) instead of being drawn at the bottom.
export function sparkline(values, { width = 120, height = 24, gaps = false } = {}) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true"); // a picture of the value written beside it
  const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
  const finite = values.filter(isNumber);
  if (finite.length >= 2) {
    const low = Math.min(...finite), high = Math.max(...finite);
    const span = high - low || 1;
    const at = (v, i) => {
      const x = (i / (values.length - 1)) * width;
      const y = isNumber(v) ? height - 2 - ((v - low) / span) * (height - 4) : height - 2;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    };
    const runs = [];
    values.forEach((v, i) => {
      if (gaps && !isNumber(v)) runs.push([]);
      else if (!runs.length) runs.push([at(v, i)]);
      else runs[runs.length - 1].push(at(v, i));
    });
    for (const run of runs) {
      if (run.length === 1) run.push(run[0]); // a lone sample between gaps: a dot (round caps)
      if (!run.length) continue;
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", run.join(" "));
      svg.append(line);
    }
  }
  svg.dataset.points = String(finite.length);
  return svg;
}
