// A stable layout: once placed, a node keeps its place for as long as it
// exists, whatever comes and goes around it (Weave Scope re-ran its layout on
// every change and the graph jumped). Pure and deterministic.
//
// Nodes are grouped by their parent (containers by host, processes by
// container); each group is a sunflower of slots around its centre, a new
// member takes the group's lowest free slot, and groups sit on shelves (rows)
// in the order they first appeared, each reserving room to grow by half again.
// A removed group leaves a hole that a later group of the same size reuses.
// A group about to outgrow its room moves, whole, to a cell with room for half
// as many again (its members keep their places relative to each other), so
// groups never overlap. Otherwise only "tidy" (relayout) moves existing nodes,
// and only when the user asks.

const GOLDEN_ANGLE = Math.PI * (3 - Math.sqrt(5));
const GAP = 30;

export class Layout {
  constructor(spacing = 34) {
    this.spacing = spacing;
    this.step = spacing / Math.sqrt(Math.PI); // sunflower scale for that nearest-neighbour distance
    this.updates = 0; // times update was called (tests read it: the table lays out nothing)
    this.clear();
  }

  clear() {
    this.generation = (this.generation || 0) + 1; // changes whenever a node is placed, moved or removed
    this.positions = new Map(); // node id -> {x, y, group, slot}
    this.groups = new Map(); // group key -> {x, y, reserved, radius, slots: [], count}
    this.holes = []; // cells of removed groups: {x, y, reserved}
    this.shelf = { x: 0, y: 0, row: 0, width: null };
  }

  // Brings the layout up to date with `nodes` (a Map of id -> node), grouping
  // by `groupOf(node)`. Returns the ids that were placed (new or regrouped) or
  // moved with their group.
  update(nodes, groupOf) {
    this.updates += 1;
    let changed = 0; // nodes removed, or to place
    for (const [id, place] of this.positions) {
      if (!nodes.has(id)) {
        this.#free(id, place);
        changed += 1;
      }
    }
    const waiting = [];
    for (const [id, node] of nodes) {
      const key = groupOf(node) || "";
      const place = this.positions.get(id);
      if (place && place.group === key) continue;
      if (place) this.#free(id, place); // it moved to another parent: it really moved
      waiting.push([id, key]);
      changed += 1;
    }
    // In id order: the same data lays out the same way, whatever order it came in.
    waiting.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const incoming = new Map(); // group key -> ids
    for (const [id, key] of waiting) {
      if (!incoming.has(key)) incoming.set(key, []);
      incoming.get(key).push(id);
    }
    const placed = [];
    this.#makeRoom(incoming, placed);
    this.#placeGroups(incoming);
    for (const [key, members] of incoming) {
      const group = this.groups.get(key);
      for (const id of members) {
        this.#take(id, key, group);
        placed.push(id);
      }
    }
    if (changed || placed.length) this.generation += 1;
    return placed;
  }

  // Places every node again from scratch: the user's "tidy".
  relayout(nodes, groupOf) {
    this.clear();
    return this.update(nodes, groupOf);
  }

  position(id) {
    return this.positions.get(id);
  }

  bounds() {
    let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    for (const { x, y } of this.positions.values()) {
      if (x < minX) minX = x;
      if (y < minY) minY = y;
      if (x > maxX) maxX = x;
      if (y > maxY) maxY = y;
    }
    return minX === Infinity ? null : { minX, minY, maxX, maxY };
  }

  // The width a group's cell takes on its shelf (its disc and the gap to its
  // neighbours'): the most its name may take without reaching theirs.
  room(group) {
    return 2 * group.reserved + GAP;
  }

  #radiusFor(count) {
    return this.step * Math.sqrt(count + 0.5) + this.spacing / 2;
  }

  #placeGroups(incoming) {
    const fresh = [...incoming.keys()].filter((key) => !this.groups.has(key));
    if (!fresh.length) return;
    const reserved = new Map(fresh.map((key) => [key, this.#radiusFor(Math.ceil(incoming.get(key).length * 1.5) + 4)]));
    if (this.shelf.width === null) {
      // Shelves about as wide as the first groups need to make a square.
      const area = fresh.reduce((sum, key) => sum + (2 * reserved.get(key) + GAP) ** 2, 0);
      this.shelf.width = Math.max(1200, Math.sqrt(area) * 1.15);
    }
    for (const key of fresh) {
      const cell = this.#cell(reserved.get(key));
      this.groups.set(key, { x: cell.x, y: cell.y, reserved: cell.reserved, radius: 0, slots: [], count: 0 });
    }
  }

  #makeRoom(incoming, moved) {
    for (const [key, members] of incoming) {
      const group = this.groups.get(key);
      if (!group) continue;
      const free = group.slots.filter((taken) => !taken).length;
      const slots = group.slots.length + Math.max(0, members.length - free);
      if (this.#radiusFor(slots - 1) <= group.reserved) continue;
      const cell = this.#cell(this.#radiusFor(Math.ceil((group.count + members.length) * 1.5) + 4));
      this.holes.push({ x: group.x, y: group.y, reserved: group.reserved });
      const dx = cell.x - group.x, dy = cell.y - group.y;
      Object.assign(group, { x: cell.x, y: cell.y, reserved: cell.reserved });
      for (const [id, place] of this.positions) {
        if (place.group !== key) continue;
        place.x += dx;
        place.y += dy;
        moved.push(id);
      }
    }
  }

  // Room for a group of radius `need`: a hole of about that size, or the next
  // place on the current shelf (or a new shelf below).
  #cell(need) {
    const hole = this.holes.findIndex((h) => h.reserved >= need && h.reserved <= need * 2);
    if (hole >= 0) return this.holes.splice(hole, 1)[0];
    const size = 2 * need + GAP;
    if (this.shelf.x > 0 && this.shelf.x + size > this.shelf.width) {
      this.shelf.x = 0;
      this.shelf.y += this.shelf.row;
      this.shelf.row = 0;
    }
    const cell = { x: this.shelf.x + size / 2, y: this.shelf.y + size / 2, reserved: need };
    this.shelf.x += size;
    this.shelf.row = Math.max(this.shelf.row, size);
    return cell;
  }

  #take(id, key, group) {
    let slot = group.slots.indexOf(false);
    if (slot < 0) slot = group.slots.length;
    group.slots[slot] = true;
    group.count += 1;
    const r = this.step * Math.sqrt(slot + 0.5);
    const angle = slot * GOLDEN_ANGLE;
    this.positions.set(id, { x: group.x + r * Math.cos(angle), y: group.y + r * Math.sin(angle), group: key, slot });
    group.radius = Math.max(group.radius, this.#radiusFor(group.slots.length - 1));
  }

  #free(id, place) {
    this.positions.delete(id);
    const group = this.groups.get(place.group);
    if (!group) return;
    group.slots[place.slot] = false;
    group.count -= 1;
    if (group.count === 0) {
      this.groups.delete(place.group);
      this.holes.push({ x: group.x, y: group.y, reserved: group.reserved });
    }
  }
}
