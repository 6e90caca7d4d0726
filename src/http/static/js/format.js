// How numbers and times read in the UI. Pure.

export function metricValue(name, value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  if (/bytes_per_sec$/.test(name)) return `${bytes(value)}/s`;
  if (/_mb$/.test(name)) return bytes(value * 1024 * 1024);
  if (/(usage|percent)(_(max|min|avg|mean))?$/.test(name)) return `${value.toFixed(1)}%`; // cpu_percent_max too
  // Counts (a group's `processes` or `containers`, sent as floats).
  if (/^(processes|threads|containers|connections)$/.test(name)) return value.toFixed(0);
  return Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(2);
}

// Bytes in powers of 1024, so named (KiB, MiB): "MB" said a million where the
// number was 2^20 (a full 1 Gb/s link, 125,000,000 B/s, read "119 MB/s").
// A value that rounds to 1024 of a unit is 1.0 of the next.
export function bytes(value) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i += 1;
  }
  let digits = Math.abs(value) >= 100 || i === 0 ? 0 : 1;
  if (i < units.length - 1 && Math.abs(Number(value.toFixed(digits))) >= 1024) {
    value /= 1024;
    i += 1;
    digits = 1;
  }
  return `${value.toFixed(digits)} ${units[i]}`;
}

// What each metric the server reports is called wherever the page names it
// (table columns, the details, the metric and size pickers): the one table.
// Kept apart where they meet in one view: a host's CPU used (of the machine)
// and a container's or process's CPU % (of one core: above 100 on several);
// a group's summed CPU % and its busiest process's. Rates read "/s" in
// their values already.
export const METRIC_NAMES = Object.freeze({
  cpu_percent: "CPU %",
  cpu_percent_max: "CPU % (max)",
  cpu_usage: "CPU used %",
  memory_mb: "Memory",
  memory_usage: "Memory used %",
  memory_used_mb: "Memory used",
  memory_percent: "Memory %",
  disk_usage: "Disk used %",
  load1: "Load 1 min",
  load5: "Load 5 min",
  load15: "Load 15 min",
  network_rx_bytes_per_sec: "Net in",
  network_tx_bytes_per_sec: "Net out",
  disk_read_bytes_per_sec: "Disk read",
  disk_write_bytes_per_sec: "Disk write",
  processes: "Processes",
  threads: "Threads",
});

// A metric's name as the page shows it: from METRIC_NAMES, else made from its key.
export function metricLabel(name) {
  if (Object.hasOwn(METRIC_NAMES, name)) return METRIC_NAMES[name];
  return name.replace(/_bytes_per_sec$/, " /s").replace(/_/g, " ");
}

export function clock(date) {
  return date ? date.toLocaleTimeString() : "–";
}

// An RFC 3339 time from the server as the user reads times (their time zone and
// language): "2 Dec 2026, 11:00", not "2026-12-02T10:00:00Z". Text that is no
// time stays as it came (visible).
export function localTime(iso) {
  const date = new Date(iso);
  if (typeof iso !== "string" || Number.isNaN(date.getTime())) return visible(iso);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// Text a probe reported, as it is to be shown: control, format (bidi
// overrides, zero-width), line-separator and other default-ignorable
// characters (a combining grapheme joiner, variation selectors, Hangul
// fillers: they show as nothing) as `\u202E`-style escapes, so that a name
// cannot hide, reorder or fake what is around it, nor pass for another.
// ZWNJ and ZWJ (U+200C, U+200D) stay: Persian and Indic words and emoji
// sequences are spelt with them, and they reorder nothing; so do the text and
// emoji presentation selectors (U+FE0E, U+FE0F), which emoji are spelt with.
// The one function the table, the graph's labels, the details, the series
// picker, the alerts and the live log (a container's line: a newline in it
// would fake a line of its own) use.
const INVISIBLE = /(?![\u200C\u200D\uFE0E\uFE0F])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/gu;

export function visible(text) {
  if (text === null || text === undefined) return "";
  const value = String(text);
  INVISIBLE.lastIndex = 0;
  if (!INVISIBLE.test(value)) return value; // the usual case: no new string
  return value.replace(INVISIBLE, escape);
}

// visible(text) for text of many lines (a command's output, its error): tabs
// and line breaks stay what they are, every other invisible is escaped.
const INVISIBLE_IN_LINES = /(?![\u200C\u200D\uFE0E\uFE0F\n\r\t])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/gu;

export function visibleLines(text) {
  if (text === null || text === undefined) return "";
  const value = String(text);
  INVISIBLE_IN_LINES.lastIndex = 0;
  if (!INVISIBLE_IN_LINES.test(value)) return value;
  return value.replace(INVISIBLE_IN_LINES, escape);
}

function escape(c) {
  return `\\u${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}`;
}

// visible(text) in at most `length` characters, cut with "…" between
// characters of `text`: never inside an escape, nor between a surrogate pair.
export function visibleShort(text, length) {
  const shown = visible(text);
  if (shown.length <= length) return shown;
  let cut = "";
  for (const c of text === null || text === undefined ? "" : String(text)) {
    const part = visible(c);
    if (cut.length + part.length > length - 1) break;
    cut += part;
  }
  return `${cut}…`;
}
