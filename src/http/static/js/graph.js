// The graph: nodes at their layout positions on a canvas, grouped by parent,
// edges for connections. Drawn only when something changed (at most once per
// frame, and no sooner after a draw than it took: pacer.js), with one path per
// colour so that 10,000 nodes are a handful of canvas calls.

import { stale, statusNote, statusTitle } from "./engine.js";
import { visible, visibleShort } from "./format.js";
import { COLOURS, health } from "./health.js";
import { labelOfId } from "./model.js";
import { Pacer } from "./pacer.js";

const BASE_RADIUS = 8;
const MAX_RADIUS = 16; // a node sized by a metric: at its largest
const GRID_CELL = 64; // world units: a cell of the index of nodes' places holds a few nodes (34 apart)
const MIN_ZOOM = 0.02, MAX_ZOOM = 8;
const CLICK_SLOP = 4; // px a press may move and still be a click
const MAX_LABELS = 1500;
// Nodes closer than this on screen are dots: edges are then drawn between
// their groups, one per pair (see #groupEdges).
const DOTS_APART_PX = 8;
const GROUP_FONT = "600 12px system-ui, sans-serif";
const GROUP_LABEL_MIN_PX = 24; // narrower than this, a group's name is not drawn at all
const LABEL_WIDTHS_KEPT = 5000; // group names whose drawn width is remembered
// What the graph draws in, by the page's colours or, under forced colours (a
// contrast theme), by the theme's: the browser repaints no canvas, and dark words
// and lines stayed dark on a dark theme's black. Groups are then an outline only.
const INKS = {
  page: { group: "#eceff5", groupEdge: "#d5dae4", groupName: "#566074", edge: "rgba(70, 82, 105, 0.35)",
    name: "#1d2330", note: "#566074", // a note under a name (statusNote): 5.5:1 on a group's disc
    hovered: "#8fb1f0", selected: "#1d2330", hollow: "#fff", faint: "rgba(154, 163, 178, 0.18)" },
  forced: { group: "Canvas", groupEdge: "CanvasText", groupName: "CanvasText", edge: "GrayText",
    name: "CanvasText", note: "CanvasText", hovered: "Highlight", selected: "Highlight", hollow: "Canvas", faint: "GrayText" },
};
// A node this wide on screen (radius, px) or wider shows its health by shape too,
// as the legend says (▲ warning, ✖ critical, ○ unknown): colour alone failed
// those who tell red from green poorly. Smaller, a mark would be a smudge.
const MARK_MIN_PX = 6;
const MARK_INK = "#fff"; // 4.1:1 on warning, 5.2:1 on critical
const CRITICAL_EDGE = "#7f1d1d"; // a darker rim: critical stands out from healthy by more than its hue

export class GraphView {
  constructor(canvas, { onSelect }) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.onSelect = onSelect;
    this.camera = { x: 0, y: 0, k: 1 };
    this.placed = false; // the camera has been fitted to some content once
    this.nodes = new Map();
    this.names = new Map();
    this.edges = new Map();
    this.layout = null;
    this.match = () => true;
    this.sizeBy = "";
    this.sizeMax = 1;
    this.selected = "";
    this.hovered = "";
    this.hoveredGroup = "";
    // The groups' names as last drawn (cut to their cells' width), in canvas
    // pixels: [{key, text, full, x, y, width}] (x, y: the middle of the baseline).
    this.groupLabels = [];
    this.labelWidths = new Map(); // a group name as shown -> its width in GROUP_FONT
    this.labelCuts = new Map(); // `${room}\n${name}` -> [the name cut to that room, its width]
    this.lastFrameMs = 0;
    this.draws = 0; // canvas redraws (tests read it: a diff that changes nothing drawn draws nothing)
    this.pacer = new Pacer(() => this.#drawTimed());
    this.betweenGroups = null; // the edges between groups, for the data of the last setData
    this.grid = null; // nodes' ids by cell of GRID_CELL (#gridOf), for the layout and generation below
    this.gridOf = null;
    this.gridGeneration = -1;
    this.gridBuilds = 0;
    this.hoverTests = 0; // hit tests made for the pointer's moves: at most one a frame
    this.lastHitTest = null; // {consulted, cells, indexed}: what the last nodeAt looked at (tests read it)
    this.betweenRuns = 0; // times they were worked out (tests read it: once per filter and change of edges)
    this.forcedColours = matchMedia("(forced-colors: active)");
    this.forcedColours.addEventListener("change", () => this.invalidate());
    this.#listen();
    new ResizeObserver(() => this.invalidate()).observe(canvas);
  }

  // edgesVersion: changes whenever `edges` (a Map or an array) changes content;
  // matchKey: whenever the nodes `match` lets through may have changed (not the
  // function: the page makes a new one at each render while a filter is set).
  // Draws nothing by itself: the caller draws (drawNow) once it has set everything.
  setData({ nodes, names, edges, edgesVersion, layout, match, matchKey, sizeBy, selected }) {
    Object.assign(this, { nodes, names, edges, layout, match, sizeBy, selected });
    // The edges between groups are worked out again only when they may differ
    // (not for every change of a metric, nor at each render of the same filter:
    // the All view's 199,000 edges took ~300 ms, at every render while filtered).
    const key = [edges, edgesVersion, layout.generation, matchKey];
    if (!this.betweenKey || key.some((value, i) => value !== this.betweenKey[i])) {
      this.betweenGroups = null;
      this.betweenKey = key;
    }
    this.sizeMax = 0;
    if (sizeBy) {
      for (const node of nodes.values()) {
        const value = node.metrics && node.metrics[sizeBy];
        if (typeof value === "number" && value > this.sizeMax) this.sizeMax = value;
      }
    }
    if (!this.placed && nodes.size) {
      this.placed = this.fit();
    }
  }

  // Works out now what the next draw would (the edges between groups, when
  // zoomed out to dots), so that the draw that follows is only drawing: a
  // caller may do the one and the other in tasks of their own.
  prepare() {
    if (this.layout && this.camera.k * this.layout.spacing < DOTS_APART_PX) this.#groupEdges();
  }

  // Something drawn changed (the camera, the hovered node, the size): drawn in a later frame.
  invalidate() {
    this.pacer.request();
  }

  // Drawn now (from a frame callback that has just set the data), instead of any draw to come.
  drawNow() {
    this.pacer.runNow();
  }

  #drawTimed() {
    const started = performance.now();
    this.#draw();
    this.lastFrameMs = performance.now() - started;
    this.draws += 1;
  }

  fit() {
    const box = this.#extent();
    const { width, height } = this.canvas.getBoundingClientRect();
    if (!box || !width || !height) return false;
    const pad = 60;
    const w = Math.max(box.maxX - box.minX, 1), h = Math.max(box.maxY - box.minY, 1);
    const k = clamp(Math.min((width - 2 * pad) / w, (height - 2 * pad) / h, 1.5), MIN_ZOOM, MAX_ZOOM);
    this.camera = { k, x: width / 2 - k * (box.minX + w / 2), y: height / 2 - k * (box.minY + h / 2) };
    this.invalidate();
    return true;
  }

  // What fit() brings into sight: the nodes, and each group's name (at most
  // its cell's width, centred on the group: #cut).
  #extent() {
    const box = this.layout && this.layout.bounds();
    if (!box) return null;
    for (const [key, group] of this.layout.groups) {
      if (!key) continue;
      const half = this.layout.room(group) / 2;
      box.minX = Math.min(box.minX, group.x - half);
      box.maxX = Math.max(box.maxX, group.x + half);
      box.minY = Math.min(box.minY, group.y - group.radius);
    }
    return box;
  }

  zoomBy(factor, cx, cy) {
    const { width, height } = this.canvas.getBoundingClientRect();
    cx = cx ?? width / 2;
    cy = cy ?? height / 2;
    const k = clamp(this.camera.k * factor, MIN_ZOOM, MAX_ZOOM);
    const f = k / this.camera.k;
    this.camera = { k, x: cx - f * (cx - this.camera.x), y: cy - f * (cy - this.camera.y) };
    this.invalidate();
  }

  // Moves the picture by (dx, dy) screen pixels.
  panBy(dx, dy) {
    this.camera = { ...this.camera, x: this.camera.x + dx, y: this.camera.y + dy };
    this.invalidate();
  }

  // Where a node is drawn, in page coordinates (for automation and tests).
  screenPosition(id) {
    const place = this.layout && this.layout.position(id);
    if (!place) return null;
    const rect = this.canvas.getBoundingClientRect();
    return { x: rect.left + this.camera.x + place.x * this.camera.k, y: rect.top + this.camera.y + place.y * this.camera.k };
  }

  radius(node) {
    if (!this.sizeBy || !this.sizeMax) return BASE_RADIUS;
    const value = node.metrics && node.metrics[this.sizeBy];
    if (typeof value !== "number" || value <= 0) return 4;
    return 4 + (MAX_RADIUS - 4) * Math.sqrt(value / this.sizeMax);
  }

  // The node drawn at (px, py), canvas pixels; "" if none. Only the nodes in the
  // grid's cells around the point are looked at (#gridOf): going through all of
  // them took 15 ms a pointer move in the All view, 161 ms with "size by" set.
  nodeAt(px, py) {
    if (!this.layout) return "";
    const { k, x, y } = this.camera;
    const wx = (px - x) / k, wy = (py - y) / k;
    const grid = this.#gridOf(this.layout);
    const reach = (this.sizeBy && this.sizeMax ? MAX_RADIUS : BASE_RADIUS) + 3 / k; // the farthest a hit can be
    const [lowX, lowY] = cellOf(wx - reach, wy - reach), [highX, highY] = cellOf(wx + reach, wy + reach);
    let best = "", bestDistance = Infinity, consulted = 0;
    for (let cx = lowX; cx <= highX; cx++) {
      for (let cy = lowY; cy <= highY; cy++) {
        const ids = grid.get(cellKey(cx, cy));
        if (!ids) continue;
        for (const id of ids) {
          consulted += 1;
          const node = this.nodes.get(id);
          if (!node || !this.match(node)) continue;
          const place = this.layout.position(id);
          if (!place) continue;
          const d = Math.hypot(place.x - wx, place.y - wy);
          if (d <= this.radius(node) + 3 / k && d < bestDistance) {
            best = id;
            bestDistance = d;
          }
        }
      }
    }
    this.lastHitTest = { consulted, cells: (highX - lowX + 1) * (highY - lowY + 1), indexed: grid.indexed };
    return best;
  }

  // The laid-out nodes by grid cell (GRID_CELL world units square): built again
  // when the layout places, moves or removes a node (its generation changes).
  #gridOf(layout) {
    if (this.grid && this.gridOf === layout && this.gridGeneration === layout.generation) return this.grid;
    const grid = new Map();
    for (const [id, place] of layout.positions) {
      const key = cellKey(...cellOf(place.x, place.y));
      const ids = grid.get(key);
      if (ids) ids.push(id);
      else grid.set(key, [id]);
    }
    grid.indexed = layout.positions.size;
    this.grid = grid;
    this.gridOf = layout;
    this.gridGeneration = layout.generation;
    this.gridBuilds += 1;
    return grid;
  }

  #draw() {
    const canvas = this.canvas, ctx = this.context;
    const dpr = window.devicePixelRatio || 1;
    const { width, height } = canvas.getBoundingClientRect();
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!this.layout) return;
    const ink = this.forcedColours.matches ? INKS.forced : INKS.page;
    const { k, x, y } = this.camera;
    ctx.setTransform(dpr * k, 0, 0, dpr * k, dpr * x, dpr * y);
    const view = { minX: -x / k, minY: -y / k, maxX: (width - x) / k, maxY: (height - y) / k };
    const inSight = (p, r) => p.x + r >= view.minX && p.x - r <= view.maxX && p.y + r >= view.minY && p.y - r <= view.maxY;

    // Groups: a disc per parent with its name.
    ctx.fillStyle = ink.group;
    ctx.strokeStyle = ink.groupEdge;
    ctx.lineWidth = 1 / k;
    const named = [];
    for (const [key, group] of this.layout.groups) {
      if (!key || !inSight(group, group.radius)) continue;
      ctx.beginPath();
      ctx.arc(group.x, group.y, group.radius, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
      named.push([key, group]);
    }

    // Edges: one path, hairlines whatever the zoom.
    ctx.beginPath();
    if (k * this.layout.spacing < DOTS_APART_PX) {
      const at = (id, group) => (group ? this.layout.groups.get(group) : this.layout.position(id));
      for (const [source, sourceGroup, target, targetGroup] of this.#groupEdges()) {
        const a = at(source, sourceGroup), b = at(target, targetGroup);
        if (!a || !b) continue;
        ctx.moveTo(a.x, a.y);
        ctx.lineTo(b.x, b.y);
      }
    } else {
      for (const edge of this.edges.values()) {
        const a = this.layout.position(edge.source), b = this.layout.position(edge.target);
        if (!a || !b) continue;
        const from = this.nodes.get(edge.source), to = this.nodes.get(edge.target);
        if (!from || !to || !this.match(from) || !this.match(to)) continue;
        ctx.moveTo(a.x, a.y);
        ctx.lineTo(b.x, b.y);
      }
    }
    ctx.strokeStyle = ink.edge;
    ctx.lineWidth = 1.2 / k;
    ctx.stroke();

    // Nodes: one path per colour; the ones the filter leaves out stay, faint,
    // so that the picture keeps its shape while searching. A container shown
    // as last known (its host's engine does not answer) is a ring, as the
    // legend's "unknown" is: no longer the engine's word. Big enough on
    // screen, an unknown node is a ring too, and a warning or critical one
    // carries its mark: one more path per kind, for the nodes in sight only.
    const buckets = new Map();
    const marks = { warning: [], critical: [] };
    // Whether any node may be that big (the usual case zoomed out: none, and no test per node).
    const marking = (this.sizeBy && this.sizeMax ? MAX_RADIUS : BASE_RADIUS) * k >= MARK_MIN_PX;
    const labelled = [];
    for (const [id, node] of this.nodes) {
      const place = this.layout.position(id);
      if (!place) continue;
      const r = this.radius(node);
      if (!inSight(place, r)) continue;
      const on = this.match(node);
      let key = on ? (stale(node) ? "ring" : health(node)) : "faint";
      if (marking && key !== "healthy" && key !== "faint" && r * k >= MARK_MIN_PX) {
        if (key === "unknown") key = "ring";
        else if (key !== "ring") marks[key].push(place.x, place.y, r);
      }
      if (!buckets.has(key)) buckets.set(key, []);
      buckets.get(key).push(place.x, place.y, r);
      if (on && labelled.length < MAX_LABELS) labelled.push([node, place, r]);
    }
    for (const [key, flat] of buckets) {
      ctx.beginPath();
      for (let i = 0; i < flat.length; i += 3) {
        ctx.moveTo(flat[i] + flat[i + 2], flat[i + 1]);
        ctx.arc(flat[i], flat[i + 1], flat[i + 2], 0, 2 * Math.PI);
      }
      if (key === "ring") {
        ctx.fillStyle = ink.hollow;
        ctx.fill();
        ctx.strokeStyle = COLOURS.unknown;
        ctx.lineWidth = 2 / k;
        ctx.stroke();
        continue;
      }
      ctx.fillStyle = key === "faint" ? ink.faint : COLOURS[key];
      ctx.fill();
    }
    this.#marks(marks, k);
    for (const [id, colour] of [[this.hovered, ink.hovered], [this.selected, ink.selected]]) {
      const place = id && this.layout.position(id);
      const node = id && this.nodes.get(id);
      if (!place || !node) continue;
      ctx.beginPath();
      ctx.arc(place.x, place.y, this.radius(node) + 3 / k, 0, 2 * Math.PI);
      ctx.strokeStyle = colour;
      ctx.lineWidth = 2.5 / k;
      ctx.stroke();
    }

    // Text in screen pixels, only when there is room for it.
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.textAlign = "center";
    // A group's name stays within its cell: a long one is cut with "…" (the
    // whole one is the canvas's tooltip over the group: #listen).
    this.groupLabels = [];
    if (k >= 0.2) {
      ctx.font = GROUP_FONT;
      ctx.fillStyle = ink.groupName;
      for (const [key, group] of named) {
        const room = this.layout.room(group) * k - 8;
        if (room < GROUP_LABEL_MIN_PX) continue;
        const full = labelOfId(key, this.nodes, this.names);
        const [text, width] = this.#cut(full, room);
        if (!text) continue;
        const at = { x: x + group.x * k, y: y + (group.y - group.radius) * k - 6 };
        ctx.fillText(text, at.x, at.y);
        this.groupLabels.push({ key, text, full: visible(full), width, ...at });
      }
    }
    // As many characters as fit between neighbours (~6.5 px each), whole below 40 nodes.
    const room = labelled.length <= 40 ? 24 : Math.min(24, Math.floor((k * this.layout.spacing) / 6.5));
    if (room >= 6) { // fewer are not worth their drawing time
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillStyle = ink.name;
      const notes = []; // a line under the name: statusNote (a host whose container engine does not answer)
      for (const [node, place, r] of labelled) {
        const at = y + (place.y + r) * k + 13;
        ctx.fillText(visibleShort(node.label, room), x + place.x * k, at);
        const note = statusNote(node);
        if (note) notes.push([note, x + place.x * k, at + 12]);
      }
      if (notes.length) {
        ctx.font = "italic 10px system-ui, sans-serif";
        ctx.fillStyle = ink.note;
        for (const [note, nx, ny] of notes) ctx.fillText(visibleShort(note, room), nx, ny);
      }
    }
  }

  // The legend's marks on the nodes `marks` lists (flat x, y, r by kind): a ▲
  // on a warning, a ✖ and a darker rim on a critical, each kind one path.
  #marks({ warning, critical }, k) {
    const ctx = this.context;
    if (warning.length) {
      ctx.beginPath();
      for (let i = 0; i < warning.length; i += 3) {
        const x = warning[i], y = warning[i + 1], r = warning[i + 2];
        ctx.moveTo(x, y - 0.62 * r);
        ctx.lineTo(x + 0.55 * r, y + 0.4 * r);
        ctx.lineTo(x - 0.55 * r, y + 0.4 * r);
        ctx.closePath();
      }
      ctx.fillStyle = MARK_INK;
      ctx.fill();
    }
    if (critical.length) {
      ctx.beginPath();
      for (let i = 0; i < critical.length; i += 3) {
        const x = critical[i], y = critical[i + 1], d = 0.4 * critical[i + 2];
        ctx.moveTo(x - d, y - d);
        ctx.lineTo(x + d, y + d);
        ctx.moveTo(x + d, y - d);
        ctx.lineTo(x - d, y + d);
      }
      ctx.strokeStyle = MARK_INK;
      ctx.lineWidth = 2 / k;
      ctx.lineCap = "round";
      ctx.stroke();
      ctx.lineCap = "butt";
      ctx.beginPath();
      for (let i = 0; i < critical.length; i += 3) {
        const x = critical[i], y = critical[i + 1], r = critical[i + 2] - 0.75 / k; // inside the disc
        ctx.moveTo(x + r, y);
        ctx.arc(x, y, r, 0, 2 * Math.PI);
      }
      ctx.strokeStyle = CRITICAL_EDGE;
      ctx.lineWidth = 1.5 / k;
      ctx.stroke();
    }
  }

  // `name` as shown (visible), cut with "…" to at most `room` pixels wide in
  // GROUP_FONT (the context's font): [text, its width]; ["", 0] when not even
  // a character and "…" fit. A whole name's width is measured once.
  #cut(name, room) {
    const whole = visible(name);
    let width = this.labelWidths.get(whole);
    if (width === undefined) {
      if (this.labelWidths.size >= LABEL_WIDTHS_KEPT) this.labelWidths.clear();
      width = this.context.measureText(whole).width;
      this.labelWidths.set(whole, width);
    }
    if (width <= room) return [whole, width];
    room = Math.floor(room);
    const key = `${room}\n${whole}`; // redrawn at the same zoom: cut once
    let fitted = this.labelCuts.get(key);
    if (fitted === undefined) {
      if (this.labelCuts.size >= LABEL_WIDTHS_KEPT) this.labelCuts.clear();
      fitted = ["", 0];
      // As many characters as the average one's width lets in, then fewer until it fits.
      for (let length = Math.floor((whole.length * room) / width); length >= 2; length -= 1) {
        const cut = visibleShort(name, length);
        const cutWidth = this.context.measureText(cut).width;
        if (cutWidth <= room) {
          fitted = [cut, cutWidth];
          break;
        }
      }
      this.labelCuts.set(key, fitted);
    }
    return fitted;
  }

  // The group whose name or disc is at (px, py), canvas pixels; "" if none.
  groupAt(px, py) {
    for (const label of this.groupLabels) {
      if (Math.abs(px - label.x) <= label.width / 2 && py <= label.y + 3 && py >= label.y - 14) return label.key;
    }
    if (!this.layout) return "";
    const { k, x, y } = this.camera;
    const wx = (px - x) / k, wy = (py - y) / k;
    for (const [key, group] of this.layout.groups) {
      if (key && Math.hypot(group.x - wx, group.y - wy) <= group.radius) return key;
    }
    return "";
  }

  // The groups' names as drawn, in page coordinates (for automation and tests).
  shownGroupLabels() {
    const rect = this.canvas.getBoundingClientRect();
    return this.groupLabels.map(({ key, text, full, x, y, width }) => ({
      key, text, full, left: rect.left + x - width / 2, right: rect.left + x + width / 2, y: rect.top + y,
      canvasLeft: rect.left, canvasRight: rect.right,
    }));
  }

  // Where nodes are dots, one line per pair of groups (hosts, containers)
  // stands for the edges between their members, and edges within a group are
  // inside its disc: tens of thousands of hairlines across the whole canvas
  // cost the browser seconds to rasterise (measured: 1.4 s for 78,000) and
  // show nothing more. A node outside any group is its own. Computed once per
  // change of data, as [source, its group, target, its group] (the groups' places
  // are read when drawing: a group may move).
  #groupEdges() {
    if (!this.betweenGroups) {
      const ends = new Map(); // group key (or node id) -> the group keys (or node ids) it is joined to
      const pairs = [];
      for (const edge of this.edges.values()) {
        const a = this.layout.position(edge.source), b = this.layout.position(edge.target);
        if (!a || !b) continue;
        const from = this.nodes.get(edge.source), to = this.nodes.get(edge.target);
        if (!from || !to || !this.match(from) || !this.match(to)) continue;
        const p = a.group || edge.source, q = b.group || edge.target;
        if (p === q) continue;
        const [low, high] = p < q ? [p, q] : [q, p];
        let seen = ends.get(low);
        if (!seen) ends.set(low, (seen = new Set()));
        if (seen.has(high)) continue;
        seen.add(high);
        pairs.push([edge.source, a.group, edge.target, b.group]);
      }
      this.betweenGroups = pairs;
      this.betweenRuns += 1;
    }
    return this.betweenGroups;
  }

  #listen() {
    const canvas = this.canvas;
    let press = null;
    let pointer = null, hovering = false; // where the pointer last moved; a hit test waits for a frame
    canvas.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      press = { x: event.clientX, y: event.clientY, cx: this.camera.x, cy: this.camera.y, moved: false };
      canvas.setPointerCapture(event.pointerId);
    });
    canvas.addEventListener("pointermove", (event) => {
      const rect = canvas.getBoundingClientRect();
      if (press) {
        const dx = event.clientX - press.x, dy = event.clientY - press.y;
        if (Math.hypot(dx, dy) > CLICK_SLOP) press.moved = true;
        if (press.moved) {
          canvas.classList.add("dragging");
          this.camera = { ...this.camera, x: press.cx + dx, y: press.cy + dy };
          this.invalidate();
        }
        return;
      }
      // Hit-tested once a frame, where the pointer was last (moves come faster than frames).
      pointer = { px: event.clientX - rect.left, py: event.clientY - rect.top };
      if (!hovering) {
        hovering = true;
        requestAnimationFrame(hover);
      }
    });
    const hover = () => {
      hovering = false;
      if (press || !pointer) return;
      const { px, py } = pointer;
      this.hoverTests += 1;
      const hovered = this.nodeAt(px, py);
      const group = hovered ? "" : this.groupAt(px, py); // its whole name (drawn cut when long)
      if (hovered !== this.hovered || group !== this.hoveredGroup) {
        const redraw = hovered !== this.hovered;
        this.hovered = hovered;
        this.hoveredGroup = group;
        canvas.classList.toggle("pointing", Boolean(hovered));
        const node = this.nodes.get(hovered);
        canvas.title = node ? `${visible(node.label)} (${visible(statusTitle(node))})`
          : group ? visible(labelOfId(group, this.nodes, this.names)) : "";
        if (redraw) this.invalidate();
      }
    };
    canvas.addEventListener("pointerup", (event) => {
      const click = press && !press.moved;
      release();
      if (click) {
        const rect = canvas.getBoundingClientRect();
        this.onSelect(this.nodeAt(event.clientX - rect.left, event.clientY - rect.top));
      }
    });
    const release = () => {
      press = null;
      canvas.classList.remove("dragging");
    };
    canvas.addEventListener("pointercancel", release);
    canvas.addEventListener("lostpointercapture", release);
    // From the keyboard (the canvas is a Tab stop): the arrows pan by an eighth of
    // the canvas, + and - zoom; the pointer was the only way to move the picture.
    canvas.addEventListener("keydown", (event) => {
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      const { width, height } = canvas.getBoundingClientRect();
      const pan = { ArrowLeft: [width / 8, 0], ArrowRight: [-width / 8, 0], ArrowUp: [0, height / 8], ArrowDown: [0, -height / 8] }[event.key];
      if (pan) this.panBy(...pan);
      else if (event.key === "+" || event.key === "=") this.zoomBy(1.4);
      else if (event.key === "-") this.zoomBy(1 / 1.4);
      else return;
      event.preventDefault(); // not the page's scrolling
    });
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      const rect = canvas.getBoundingClientRect();
      this.zoomBy(Math.exp(-event.deltaY * 0.0015), event.clientX - rect.left, event.clientY - rect.top);
    }, { passive: false });
  }
}

function cellOf(x, y) {
  return [Math.floor(x / GRID_CELL), Math.floor(y / GRID_CELL)];
}

// One number per cell (a layout spans far fewer than 2^20 cells either way).
function cellKey(cx, cy) {
  return (cx + 1048576) * 2097152 + (cy + 1048576);
}

function clamp(value, low, high) {
  return Math.min(high, Math.max(low, value));
}
