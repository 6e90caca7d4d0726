// Search and filters as one predicate over nodes. Pure.
//
// Search is case-insensitive and every word must occur somewhere: in the label,
// the id, the parent's id, a metadata value or a label's key=value (an item of a list:
// key=item, as in pids=1013). Labels given as "key=value"
// must match exactly; a bare "key" asks for the label to be present.

function haystack(node) {
  // The parent's id too: its name is in it ("host:web-1"), and the Parent column shows it.
  const parts = [node.label, node.id, node.status, node.type, node.parent || ""];
  const walk = (value, key) => {
    if (value === null || value === undefined) return;
    if (Array.isArray(value)) {
      for (const item of value) walk(item, key); // "pids=1013", "ip_addresses=10.0.0.5"
    } else if (typeof value === "object") {
      for (const [k, v] of Object.entries(value)) walk(v, k);
    } else {
      parts.push(key ? `${key}=${value}` : String(value));
    }
  };
  walk(node.metadata || {}, "");
  return parts.join("\n").toLowerCase();
}

const cache = new WeakMap(); // node object -> its search text (nodes are replaced, never mutated)

function searchText(node) {
  let found = cache.get(node);
  if (found === undefined) {
    found = haystack(node);
    cache.set(node, found);
  }
  return found;
}

export function compileFilter({ q = "", type = "", labels = [], metric = "", min = null }) {
  const words = q.toLowerCase().split(/\s+/).filter(Boolean);
  const wanted = labels.map((l) => {
    const at = l.indexOf("=");
    return at < 0 ? [l.trim(), null] : [l.slice(0, at).trim(), l.slice(at + 1).trim()];
  });
  const active = words.length > 0 || Boolean(type) || wanted.length > 0 || (Boolean(metric) && min !== null);
  const predicate = (node) => {
    if (type && node.type !== type) return false;
    if (wanted.length) {
      const nodeLabels = (node.metadata && node.metadata.labels) || {};
      for (const [key, value] of wanted) {
        if (!Object.hasOwn(nodeLabels, key)) return false; // not `in`: every object has a constructor
        if (value !== null && nodeLabels[key] !== value) return false;
      }
    }
    if (metric && min !== null) {
      const value = node.metrics && node.metrics[metric];
      if (typeof value !== "number" || value < min) return false;
    }
    if (words.length) {
      const text = searchText(node);
      for (const word of words) if (!text.includes(word)) return false;
    }
    return true;
  };
  predicate.active = active;
  return predicate;
}
