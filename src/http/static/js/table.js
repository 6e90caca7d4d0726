// The table: every node of the view that passes the filters, sortable by any
// column. Only the rows in sight exist in the DOM (a pool of row elements is
// refilled on scroll), so 10,000 rows cost what 40 do.

import { health } from "./health.js";
import { labelOfId } from "./model.js";
import { metricLabel, metricValue } from "./format.js";

const ROW_HEIGHT = 28; // .tr's height (border-box: the border is inside)
const OVERSCAN = 8;
const MAX_METRIC_COLUMNS = 5;

export class TableView {
  constructor(root, { onSelect, onSort }) {
    this.root = root;
    this.head = root.querySelector("#table-head");
    this.scroll = root.querySelector("#table-scroll");
    this.spacer = root.querySelector("#table-spacer");
    this.body = root.querySelector("#table-body");
    this.onSelect = onSelect;
    this.onSort = onSort;
    this.rows = [];
    this.columns = [];
    this.selected = "";
    this.pool = [];
    this.scroll.addEventListener("scroll", () => this.#paint(), { passive: true });
    this.body.addEventListener("click", (event) => {
      const row = event.target.closest(".tr");
      if (row && row.dataset.id) this.onSelect(row.dataset.id);
    });
    this.body.addEventListener("keydown", (event) => {
      const row = event.target.closest(".tr");
      if (row && row.dataset.id && (event.key === "Enter" || event.key === " ")) {
        event.preventDefault();
        this.onSelect(row.dataset.id);
      }
    });
    this.head.addEventListener("click", (event) => {
      const cell = event.target.closest(".th");
      if (cell) this.onSort(cell.dataset.key);
    });
    new ResizeObserver(() => this.#paint()).observe(this.scroll);
  }

  // nodes: the matching nodes; all: the view's nodes by id and names: container
  // names (for parents' names); key: changes whenever the rows may have (the
  // rows are sorted again only then).
  setData({ nodes, all, names, metrics, showType, sort, dir, selected, key }) {
    const columns = [
      { key: "label", title: "Name", get: (n) => n.label },
      ...(showType ? [{ key: "type", title: "Type", get: (n) => n.type }] : []),
      { key: "status", title: "Status", get: (n) => n.status, status: true },
      { key: "parent", title: "Parent", get: (n) => (n.parent ? labelOfId(n.parent, all, names) : "") },
      ...metrics.slice(0, MAX_METRIC_COLUMNS).map((name) => ({
        key: name, title: metricLabel(name), metric: name, get: (n) => (n.metrics ? n.metrics[name] : undefined),
      })),
    ];
    const column = columns.find((c) => c.key === sort) || columns[0];
    const order = `${key}\n${column.key}\n${dir}`;
    if (order !== this.order) {
      this.order = order;
      const sign = dir === "desc" ? -1 : 1;
      const keyed = nodes.map((n) => [column.get(n), n]);
      keyed.sort(([a, na], [b, nb]) => blanksLast(a, b) || sign * compare(a, b)
        || compare(na.label, nb.label) || compare(na.id, nb.id));
      this.rows = keyed.map(([, n]) => n);
    }
    this.selected = selected;
    if (!sameColumns(columns, this.columns) || this.sort !== column.key || this.dir !== dir) {
      this.columns = columns;
      this.sort = column.key;
      this.dir = dir;
      this.#header();
    }
    this.spacer.style.height = `${this.rows.length * ROW_HEIGHT}px`;
    this.#paint();
  }

  // Brings a row into sight (after a selection elsewhere).
  reveal(id) {
    const index = this.rows.findIndex((n) => n.id === id);
    if (index < 0) return;
    const top = index * ROW_HEIGHT;
    if (top < this.scroll.scrollTop || top > this.scroll.scrollTop + this.scroll.clientHeight - ROW_HEIGHT) {
      this.scroll.scrollTop = Math.max(0, top - this.scroll.clientHeight / 2);
    }
  }

  #header() {
    const template = this.columns.map((c) => (c.metric ? "110px" : c.key === "label" ? "minmax(160px, 2fr)" : "minmax(90px, 1fr)")).join(" ");
    this.root.style.setProperty("--columns", template);
    this.head.replaceChildren(...this.columns.map((c) => {
      const cell = document.createElement("div");
      cell.className = c.metric ? "th num" : "th";
      cell.setAttribute("role", "columnheader");
      cell.dataset.key = c.key;
      cell.textContent = c.title;
      cell.title = `Sort by ${c.title}`;
      if (c.key === this.sort) cell.setAttribute("aria-sort", this.dir === "desc" ? "descending" : "ascending");
      return cell;
    }));
    for (const row of this.pool) row.remove();
    this.pool = [];
  }

  #paint() {
    if (this.root.hidden) return;
    const first = Math.max(0, Math.floor(this.scroll.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const count = Math.ceil(this.scroll.clientHeight / ROW_HEIGHT) + 2 * OVERSCAN;
    const slice = this.rows.slice(first, first + count);
    while (this.pool.length < slice.length) this.pool.push(this.#row());
    this.body.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    this.pool.forEach((row, i) => {
      const node = slice[i];
      if (!node) {
        if (row.isConnected) row.remove();
        return;
      }
      if (!row.isConnected) this.body.append(row);
      row.dataset.id = node.id;
      row.classList.toggle("selected", node.id === this.selected);
      this.columns.forEach((column, c) => {
        const cell = row.children[c];
        const value = column.get(node);
        cell.textContent = column.metric ? metricValue(column.metric, value) : value ?? "";
        if (column.status) cell.className = `td status ${health(node)}`;
      });
    });
  }

  #row() {
    const row = document.createElement("div");
    row.className = "tr";
    row.setAttribute("role", "row");
    row.tabIndex = 0; // rows are reachable and selectable from the keyboard (Enter)
    for (const column of this.columns) {
      const cell = document.createElement("div");
      cell.className = column.metric ? "td num" : "td";
      cell.setAttribute("role", "cell");
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

function sameColumns(a, b) {
  return a.length === b.length && a.every((c, i) => c.key === b[i].key);
}
