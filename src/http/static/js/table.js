// The table: every node of the view that passes the filters, sortable by any
// column. Only the rows in sight exist in the DOM (a pool of row elements is
// refilled on scroll), so 10,000 rows cost what 40 do.
//
// From the keyboard: the headers are buttons (Enter sorts); the rows are one
// Tab stop, in which ArrowUp/ArrowDown, PageUp/PageDown and Home/End move the
// focus, ArrowLeft/ArrowRight scroll by a column, and Enter opens the focused
// node. Focus follows the node, not the row element: when a live diff
// re-sorts the rows, it moves with its node.

import { stale, statusText, statusTitle } from "./engine.js";
import { health } from "./health.js";
import { labelOfId } from "./model.js";
import { metricLabel, metricValue, visible } from "./format.js";

const ROW_HEIGHT = 28; // .tr's height (border-box: the border is inside)
const ROW_PADDING = 10; // .tr's padding on either side, px
const OVERSCAN = 8;
export const MAX_METRIC_COLUMNS = 5;

export class TableView {
  // onSelect(id, {keyboard}): a row was opened (keyboard: by Enter or Space, where the focus stays).
  constructor(root, { onSelect, onSort }) {
    this.root = root;
    this.head = root.querySelector("#table-head");
    this.scroll = root.querySelector("#table-scroll");
    this.spacer = root.querySelector("#table-spacer");
    this.body = root.querySelector("#table-body");
    this.onSelect = onSelect;
    this.onSort = onSort;
    this.rows = []; // in order: {id, node, value, label} (value: the sorted column's)
    this.byId = new Map(); // node id -> its row
    this.sorts = 0; // full sorts done (tests read it: a diff of metrics does none)
    this.moved = 0; // rows the last render moved (came, went or changed place)
    this.looked = 0; // nodes the last render that sorted nothing afresh looked at (tests read it)
    this.columns = [];
    this.selected = "";
    this.pool = [];
    this.focused = ""; // the id of the node whose row has (or last had) the keyboard's focus
    this.scroll.tabIndex = -1; // holds the focus while the focused node's row is out of the pool
    this.headLeft = 0; // where the rows last scrolled the header to
    this.scroll.addEventListener("scroll", () => {
      // The header scrolled sideways as the rows are, read before #paint writes (no forced layout).
      this.headLeft = this.head.parentElement.scrollLeft = this.scroll.scrollLeft;
      this.#paint();
    }, { passive: true });
    // And the rows as the header is, when it scrolled by itself: a header's button
    // focused out of sight (Tab) scrolls the header into sight of it, and the rows
    // stayed behind. Not where the rows put it: scroll events come a frame later,
    // and one of an earlier place scrolled the rows back to it.
    this.head.parentElement.addEventListener("scroll", () => {
      const left = this.head.parentElement.scrollLeft;
      if (left !== this.headLeft) this.scroll.scrollLeft = left;
    }, { passive: true });
    this.body.addEventListener("click", (event) => {
      const row = event.target.closest(".tr");
      if (row && row.dataset.id) this.onSelect(row.dataset.id);
    });
    this.body.addEventListener("focusin", (event) => {
      const row = event.target.closest(".tr");
      if (row && row.dataset.id) this.focused = row.dataset.id;
    });
    this.scroll.addEventListener("keydown", (event) => this.#key(event));
    this.head.addEventListener("click", (event) => {
      const cell = event.target.closest(".th");
      if (cell) this.onSort(cell.dataset.key);
    });
    // The header's buttons are rebuilt when the sort changes: the focus stays on the column's.
    this.head.addEventListener("focusin", (event) => {
      const cell = event.target.closest(".th");
      this.headFocus = cell ? cell.dataset.key : null;
    });
    this.head.addEventListener("focusout", () => {
      this.headFocus = null;
    });
    // The header as wide as the rows' viewport (no scrollbar above it): measured when that
    // changes (a resize, the scrollbar coming or going), not at every paint, where reading
    // clientWidth after writing the rows forced a layout at each scroll event.
    new ResizeObserver(() => {
      this.head.parentElement.style.width = `${this.scroll.clientWidth}px`;
      this.#paint();
    }).observe(this.scroll);
  }

  // all: the view's nodes by id; shows: whether the filters let a node
  // through; names: container names (for parents' names); key: changes whenever
  // the filters do (the rows are then sorted again from scratch); touched: the
  // ids of the nodes that came, changed or went since the last setData (null:
  // any may have). Otherwise only the rows of the touched nodes that came, went
  // or whose sorted values changed move (a diff that changes metrics of a view
  // sorted by name moves none), and no other node is looked at: the rows are
  // kept in order, each with its sort values worked out once.
  setData({ all, shows, names, metrics, showType, sort, dir, selected, key, touched = null }) {
    const columns = [
      { key: "label", title: "Name", get: (n) => n.label },
      ...(showType ? [{ key: "type", title: "Type", get: (n) => n.type }] : []),
      // "unknown (last: running)" for a container its host's engine no longer lists: sorted as shown.
      { key: "status", title: "Status", get: statusText, status: true },
      { key: "parent", title: "Parent", get: (n) => (n.parent ? labelOfId(n.parent, all, names) : "") },
      ...metrics.slice(0, MAX_METRIC_COLUMNS).map((name) => ({
        key: name, title: metricLabel(name), metric: name, get: (n) => (n.metrics ? n.metrics[name] : undefined),
      })),
    ];
    const column = columns.find((c) => c.key === sort) || columns[0];
    const order = `${key}\n${column.key}\n${dir}`;
    const nodes = () => [...all.values()].filter(shows);
    if (order !== this.order) {
      this.order = order;
      this.#sortAll(nodes(), column.get, dir);
    } else {
      // A row's parent's name is another node's: sorted by it, any change may move any row.
      this.#follow(column.key === "parent" ? null : touched, all, shows, nodes, column.get, dir);
    }
    this.selected = selected;
    // Asked before #header takes the rows (the focused one too) out of the page.
    const had = this.scroll.contains(document.activeElement);
    if (!sameColumns(columns, this.columns) || this.sort !== column.key || this.dir !== dir) {
      this.columns = columns;
      this.sort = column.key;
      this.dir = dir;
      this.#header();
    }
    this.spacer.style.height = `${this.rows.length * ROW_HEIGHT}px`;
    // Only the rows in sight are in the DOM: how many there are, and where each is, is said (the header is row 1).
    this.root.setAttribute("aria-rowcount", String(this.rows.length + 1));
    this.#paint(had);
  }

  // Every row sorted again (the filters, the column or the direction changed).
  #sortAll(nodes, get, dir) {
    this.sorts += 1;
    this.byId = new Map();
    const rows = new Array(nodes.length);
    nodes.forEach((node, i) => {
      const row = { id: node.id, node, value: get(node), label: node.label, stamp: 0 };
      rows[i] = row;
      this.byId.set(node.id, row);
    });
    rows.sort(ordering(dir));
    this.rows = rows;
    this.moved = rows.length;
  }

  // The same filters and sort: of the rows of the nodes `touched` names (null: all), those that
  // came, went or whose sort values changed are taken out and put back in their
  // places (binary search); the others keep theirs. Many changes at once: sorted
  // again whole.
  #follow(touched, all, shows, nodes, get, dir) {
    const stamp = (this.stamp = (this.stamp || 0) + 1);
    const changed = [];
    const gone = new Set();
    let looked = 0;
    for (const id of touched || all.keys()) {
      looked += 1;
      const node = all.get(id);
      let row = this.byId.get(id);
      if (!node || !shows(node)) {
        if (row !== undefined) gone.add(row);
        continue;
      }
      if (row === undefined) {
        row = { id, node, value: get(node), label: node.label, stamp };
        row.moving = stamp;
        changed.push(row);
        continue;
      }
      row.node = node;
      const value = get(node);
      if (value !== row.value || node.label !== row.label) {
        row.moving = stamp; // taken out below, put back with its new values
        row.value = value;
        row.label = node.label;
        changed.push(row);
      }
    }
    this.looked = looked;
    // Any node may have changed: the rows of nodes no longer in the view went too.
    if (!touched) {
      for (const row of this.rows) if (!all.has(row.id)) gone.add(row);
    }
    this.moved = changed.length + gone.size;
    if (!this.moved) return;
    if (this.moved > Math.max(64, this.rows.length / 8)) {
      this.#sortAll(nodes(), get, dir);
      return;
    }
    const kept = this.rows.filter((row) => row.moving !== stamp && !gone.has(row));
    for (const row of gone) this.byId.delete(row.id);
    for (const row of changed) this.byId.set(row.id, row);
    const compare = ordering(dir);
    changed.sort(compare);
    // Merge: each changed row goes where a binary search in the kept rows puts it.
    const rows = [];
    let from = 0;
    for (const row of changed) {
      let low = from, high = kept.length;
      while (low < high) {
        const mid = (low + high) >>> 1;
        if (compare(kept[mid], row) <= 0) low = mid + 1;
        else high = mid;
      }
      for (let i = from; i < low; i++) rows.push(kept[i]);
      rows.push(row);
      from = low;
    }
    for (let i = from; i < kept.length; i++) rows.push(kept[i]);
    this.rows = rows;
  }

  // Brings a row into sight (after a selection elsewhere).
  reveal(id) {
    const row = this.byId.get(id);
    const index = row ? this.rows.indexOf(row) : -1;
    if (index < 0) return;
    const top = index * ROW_HEIGHT;
    if (top < this.scroll.scrollTop || top > this.scroll.scrollTop + this.scroll.clientHeight - ROW_HEIGHT) {
      this.scroll.scrollTop = Math.max(0, top - this.scroll.clientHeight / 2);
    }
  }

  // The keyboard's focus to `id`'s row (brought into sight), or to the table when it has none.
  focusNode(id) {
    if (!this.byId.has(id)) {
      this.scroll.focus({ preventScroll: true });
      return;
    }
    this.focused = id;
    this.reveal(id);
    this.#paint(true);
  }

  #key(event) {
    if (event.key === "Enter" || event.key === " ") {
      if (!this.focused || !this.byId.has(this.focused)) return;
      event.preventDefault();
      this.onSelect(this.focused, { keyboard: true });
      return;
    }
    if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      event.preventDefault();
      this.#scrollColumn(event.key === "ArrowRight" ? 1 : -1);
      return;
    }
    const page = Math.max(1, Math.floor(this.scroll.clientHeight / ROW_HEIGHT) - 1);
    const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page, Home: -Infinity, End: Infinity };
    if (!(event.key in moves) || !this.rows.length) return;
    event.preventDefault();
    const row = this.byId.get(this.focused);
    const at = row ? this.rows.indexOf(row) : -1;
    const index = Math.min(this.rows.length - 1, Math.max(0, at < 0 ? 0 : at + moves[event.key]));
    this.focused = this.rows[index].id;
    this.#show(index);
    this.#paint(true);
  }

  // Scrolls sideways to the next column's start (`step` 1) or the previous one's
  // (-1): at 320 px (400 % zoom) most columns are out of sight, and rows have
  // the focus, not cells, so nothing else brings them in from the keyboard.
  #scrollColumn(step) {
    const origin = this.head.getBoundingClientRect().left + ROW_PADDING; // a column shown starts where the first does
    const starts = [...this.head.children].map((cell) => cell.getBoundingClientRect().left - origin);
    const at = this.scroll.scrollLeft;
    const next = step > 0 ? starts.find((left) => left > at + 1) : starts.findLast((left) => left < at - 1);
    this.scroll.scrollLeft = next ?? (step > 0 ? this.scroll.scrollWidth : 0);
  }

  // Scrolls as little as brings row `index` whole into sight.
  #show(index) {
    const top = index * ROW_HEIGHT;
    if (top < this.scroll.scrollTop) this.scroll.scrollTop = top;
    else if (top + ROW_HEIGHT > this.scroll.scrollTop + this.scroll.clientHeight) {
      this.scroll.scrollTop = top + ROW_HEIGHT - this.scroll.clientHeight;
    }
  }

  #header() {
    const least = (c) => (c.metric ? 110 : c.key === "label" ? 160 : 90); // px
    const template = this.columns.map((c) => (c.metric ? "110px" : `minmax(${least(c)}px, ${c.key === "label" ? 2 : 1}fr)`)).join(" ");
    this.root.style.setProperty("--columns", template);
    // Rows and header at least as wide as their columns (app.css): as wide as the window,
    // their backgrounds stopped short, and a header's button could not scroll into sight.
    this.root.style.setProperty("--columns-width", `${this.columns.reduce((sum, c) => sum + least(c), 0) + 2 * ROW_PADDING}px`);
    const focus = this.headFocus;
    this.head.replaceChildren(...this.columns.map((c) => {
      const cell = document.createElement("div");
      cell.className = c.metric ? "th num" : "th";
      cell.setAttribute("role", "columnheader");
      cell.dataset.key = c.key;
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = c.title;
      button.title = `Sort by ${c.title}`;
      cell.append(button);
      if (c.key === this.sort) cell.setAttribute("aria-sort", this.dir === "desc" ? "descending" : "ascending");
      return cell;
    }));
    const again = focus && [...this.head.children].find((cell) => cell.dataset.key === focus);
    if (again) again.firstChild.focus();
    for (const row of this.pool) row.remove();
    this.pool = [];
  }

  // focus: move the keyboard's focus to the focused node's row (after a key,
  // or where the table had it before its rows were rebuilt); otherwise it
  // follows its node only if the table has it.
  #paint(focus = false) {
    if (this.root.hidden) return;
    const had = focus || this.scroll.contains(document.activeElement);
    const first = Math.max(0, Math.floor(this.scroll.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const count = Math.ceil(this.scroll.clientHeight / ROW_HEIGHT) + 2 * OVERSCAN;
    const slice = this.rows.slice(first, first + count);
    while (this.pool.length < slice.length) this.pool.push(this.#row());
    this.body.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    this.pool.forEach((row, i) => {
      const node = slice[i] && slice[i].node;
      if (!node) {
        if (row.isConnected) row.remove();
        return;
      }
      if (!row.isConnected) this.body.append(row);
      row.dataset.id = node.id;
      row.setAttribute("aria-rowindex", String(first + i + 2));
      row.classList.toggle("selected", node.id === this.selected);
      row.setAttribute("aria-selected", String(node.id === this.selected));
      row.classList.toggle("stale", stale(node)); // muted: as last known, its engine not answering
      this.columns.forEach((column, c) => {
        const cell = row.children[c];
        const value = column.get(node);
        cell.textContent = column.metric ? metricValue(column.metric, value) : visible(value);
        if (column.status) {
          cell.className = `td status ${health(node)}`;
          // Why, where the cell says only that (a host whose engine does not answer); rows are reused.
          const title = statusTitle(node);
          if (title !== value) cell.title = visible(title);
          else cell.removeAttribute("title");
        }
      });
    });
    this.#rove(had);
  }

  // One Tab stop for the rows: the focused node's (else the first in sight).
  // Where the focus was in the table, it goes to the row now showing its node,
  // or to the scroller while that row is out of the pool.
  #rove(had) {
    const shown = this.pool.filter((row) => row.isConnected);
    const mine = shown.find((row) => row.dataset.id === this.focused);
    shown.forEach((row, i) => {
      row.tabIndex = row === mine || (!mine && i === 0) ? 0 : -1;
    });
    if (!had || !this.focused) return;
    const target = mine || this.scroll;
    if (document.activeElement !== target) target.focus({ preventScroll: true });
  }

  #row() {
    const row = document.createElement("div");
    row.className = "tr";
    row.setAttribute("role", "row");
    row.tabIndex = 0; // rows are reachable and selectable from the keyboard (Enter)
    for (const column of this.columns) {
      const cell = document.createElement("div");
      cell.className = column.metric ? "td num" : "td";
      cell.setAttribute("role", "gridcell");
      row.append(cell);
    }
    return row;
  }
}

const collator = new Intl.Collator(undefined, { numeric: true });

function blank(value) {
  return value === undefined || value === null || value === "";
}

// Rows without the value go last, whichever way the column is sorted.
function blanksLast(a, b) {
  return blank(a) === blank(b) ? 0 : blank(a) ? 1 : -1;
}

function compare(a, b) {
  if (a === b || (blank(a) && blank(b))) return 0;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return collator.compare(String(a), String(b));
}

// The rows' order: by the column's value (blanks last), then name, then id.
function ordering(dir) {
  const sign = dir === "desc" ? -1 : 1;
  return (a, b) => blanksLast(a.value, b.value) || sign * compare(a.value, b.value)
    || compare(a.label, b.label) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function sameColumns(a, b) {
  return a.length === b.length && a.every((c, i) => c.key === b[i].key);
}
