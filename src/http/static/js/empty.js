// What the page says when none of the user's views holds a node: how to get
// some. Pure: from the stats and the signed-in user.
//
// Where reads are protected (--protect-reads), each user sees the probes
// enrolled in their tenant's deployments, and probes of no deployment (unsigned,
// as the server's local probe is) only with --show-unassigned-agents true: a
// plain `trioscope-probe --server` would be hidden too. An ADMIN's stats say
// (`server`, the whole server's figures, comes only then); another user's do
// not, so their advice says what depends on it.

const SHOW_UNASSIGNED = "--show-unassigned-agents true";

const plural = (count, word) => `${count} ${word}${count === 1 ? "" : "s"}`;

// A word as a shell takes it: an IPv6 origin's brackets are a pattern to zsh
// (macOS's shell: "no matches found") and to bash with failglob.
export const shellWord = (text) => (/^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`);

// The reads' protection as the stats show it: true, false, or null (not known).
function readsProtected(stats, role) {
  if (stats && stats.server) return true; // only an ADMIN's, only where reads are protected
  return role === "ADMIN" ? false : null; // an ADMIN without it: reads are open
}

/**
 * Args: `stats` (GET /api/v1/query/stats, or null before the first answer),
 * `principal` (GET /api/v1/users/me), `origin` (this server's address).
 * Returns `{title, hidden, lead, command, note}`: texts to show, `hidden` and
 * `note` null when there is nothing to say.
 */
export function emptyAdvice(stats, principal, origin) {
  const { role = "", tenant = "", user_id: user = "", permissions = [] } = principal || {};
  const plain = `.venv/bin/trioscope-probe --server ${shellWord(origin)}`;
  // The token in the environment, not a flag: any local user reads a process's
  // arguments while it tries to enrol (and could enrol first with them).
  const enrolled = `TRIOSCOPE_PROBE_ENROLLMENT_TOKEN=TOKEN ${plain} --deployment-hash HASH`;
  // Where a deployment's hash and one-time enrollment token come from: creating
  // one needs the operate permission (an OPERATOR or ADMIN, for themselves).
  const deployments = permissions.includes("operate")
    ? `POST /api/v1/users/${encodeURIComponent(user)}/deployments answers its hash and a one-time enrollment token`
    : `an OPERATOR of ${tenant} creates one and gives you its hash and one-time enrollment token`;
  const unassigned = "Probes of no deployment (unsigned, such as the server's local probe) are shown to every user "
    + `only when the server runs with ${SHOW_UNASSIGNED}.`;
  const protection = readsProtected(stats, role);
  const whole = protection ? stats.server : null;
  const hiddenNodes = whole ? Math.max(0, whole.topology.nodes - stats.topology.nodes) : 0;
  if (hiddenNodes > 0) {
    // The server has nodes, none of them this user's: starting another probe
    // the same way would not show it either.
    const agents = Math.max(0, whole.agents - stats.agents);
    return {
      title: "No reports you can see",
      hidden: `The server holds ${plural(hiddenNodes, "node")}${agents ? ` from ${plural(agents, "agent")}` : ""}, `
        + `none from a probe enrolled in a deployment of your tenant (${tenant}): reads are protected `
        + "(--protect-reads), and each user sees the probes enrolled in their tenant's deployments.",
      lead: `To see a probe's nodes, enrol it in a deployment of ${tenant} (${deployments}):`,
      command: enrolled,
      note: unassigned,
    };
  }
  if (protection) {
    return {
      title: "No reports yet",
      hidden: null,
      lead: `trioscope shows what probes report, and this server shows you those enrolled in a deployment of your `
        + `tenant (${tenant}; ${deployments}). Start one on any host you want to see:`,
      command: enrolled,
      note: unassigned,
    };
  }
  return {
    title: "No reports yet",
    hidden: null,
    lead: "trioscope shows what probes report. Start one on any host you want to see:",
    command: plain,
    note: protection === null
      ? "If the server protects reads (--protect-reads), you see only the probes enrolled in a deployment of your "
        + `tenant (${tenant}): add --deployment-hash HASH and the token in TRIOSCOPE_PROBE_ENROLLMENT_TOKEN (${deployments}). `
        + unassigned
      : null,
  };
}
