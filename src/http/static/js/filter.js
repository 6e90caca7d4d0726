// Search and filters as one predicate over nodes. Pure.
//
// Search is case-insensitive and every word must match. A word is found anywhere in
// the label, the id, the parent's id, a metadata value or a label's key=value; a
// word "key=value" whose key is one of the node's metadata or label keys matches
// one of its items whole instead (an item of a list: key=item, as in pids=1013; so
// pids=1 is the process of pid 1, not every pid with a 1 in it, and app=web not
// app=webhook). Labels given as "key=value" must match exactly; a bare "key" asks
// for the label to be present.

// A newline is a space in the search text: its lines are the node's parts, and no
// part can pass for another's item (a search word holds neither).
const oneLine = (text) => String(text).replaceAll("\n", " ");

// The node's search text, lower case: its parts one a line, between newlines, so
// that "\nkey=value\n" is an item whole and "\nkey=" says the node has the key.
// One string, not a set of items: a page may search 100,000 processes, and the
// text is all it keeps of each.
function searchText(node) {
  // The parent's id too: its name is in it ("host:web-1"), and the Parent column shows it.
  const parts = [node.label, node.id, node.status, node.type, node.parent || ""].map(oneLine);
  const walk = (value, key) => {
    if (value === null || value === undefined) return;
    if (Array.isArray(value)) {
      for (const item of value) walk(item, key); // "pids=1013", "ip_addresses=10.0.0.5"
    } else if (typeof value === "object") {
      for (const [k, v] of Object.entries(value)) walk(v, k);
    } else {
      parts.push(oneLine(key ? `${key}=${value}` : value));
    }
  };
  walk(node.metadata || {}, "");
  return `\n${parts.join("\n")}\n`.toLowerCase();
}

const cache = new WeakMap(); // node object -> its search text (nodes are replaced, never mutated)

function cachedText(node) {
  let found = cache.get(node);
  if (found === undefined) {
    found = searchText(node);
    cache.set(node, found);
  }
  return found;
}

// Whether a word of the search (lower case) matches a node's search text.
function matches(text, word) {
  const at = word.indexOf("=");
  // A key the node has: one of its items, whole ("key=", as typed so far, any
  // of them). Any other word with "=" (a command line's "--port=8080") is text,
  // as every word is.
  if (at > 0 && text.includes(`\n${word.slice(0, at + 1)}`)) {
    return at === word.length - 1 || text.includes(`\n${word}\n`);
  }
  return text.includes(word);
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
      const text = cachedText(node);
      for (const word of words) if (!matches(text, word)) return false;
    }
    return true;
  };
  predicate.active = active;
  return predicate;
}
