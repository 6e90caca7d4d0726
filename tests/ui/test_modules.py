"""The UI's pure modules (model, layout, filter, URL state), run in the browser
they ship to, imported from the real server exactly as the page imports them."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.server_process import ServerProcess


@pytest.fixture(scope="module")
def page(browser: Browser) -> Any:
    with ServerProcess() as server:
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{server.base_url}/")  # the page waits at its sign-in: nothing else runs
        yield page
        context.close()
        assert errors == []


def run(page: Page, module: str, body: str) -> Any:
    """Evaluate ``body`` (statements ending in a return) with ``m`` the module."""
    return page.evaluate(f"async () => {{ const m = await import('/ui/js/{module}.js'); {body} }}")


NODES = """
const node = (id, parent, extra = {}) => ({ id, type: id.split(':')[0], label: id.split(':')[1], parent,
  status: 'running', metadata: {}, metrics: {}, ...extra });
"""


def test_a_diff_that_does_not_follow_the_current_version_is_a_gap(page: Page) -> None:
    result = run(page, "model", """
      const t = new m.Topology();
      const first = t.apply({ version: 3, previous_version: 2, add: { nodes: { a: {} } } });
      const reset = t.apply({ reset: true, version: 5, view: 'hosts', nodes: { a: { label: 'a' } }, edges: {} });
      const diff = t.apply({ version: 6, previous_version: 5, add: { nodes: { b: {} }, edges: {} },
                             update: { nodes: { a: { label: 'A' } }, edges: {} }, remove: { nodes: [], edges: [] } });
      const gap = t.apply({ version: 9, previous_version: 7, remove: { nodes: ['a'] } });
      const repeat = t.apply({ version: 6, previous_version: 5, remove: { nodes: ['a'] } });
      return [first.kind, reset.kind, diff, gap.kind, repeat.kind, t.version, [...t.nodes.keys()].sort(),
              t.nodes.get('a').label];
    """)
    assert result[0] == "gap" and result[1] == "reset"
    assert result[2] == {"kind": "diff", "added": ["b"], "updated": ["a"], "removed": [], "edges": 0}
    assert result[3:] == ["gap", "stale", 6, ["a", "b"], "A"]  # nothing of the gap or the repeat was applied


def test_container_groups_are_named_from_their_processes_where_the_view_has_no_container_nodes(page: Page) -> None:
    result = run(page, "model", NODES + """
      const t = new m.Topology();
      const C1 = 'container:' + '1'.repeat(64), C2 = 'container:' + '2'.repeat(64);
      t.apply({ reset: true, version: 1, view: 'processes', edges: {}, nodes: {
        'process:h:1': node('process:h:1', C1, { metadata: { container_name: 'db' } }) } });
      t.apply({ version: 2, previous_version: 1, add: { nodes: {
        'process:h:2': node('process:h:2', C2, { metadata: { container_name: 'web' } }) } } });
      const host = node('host:h', null);
      return [m.labelOfId(C1, t.nodes, t.names), m.labelOfId(C2, t.nodes, t.names),
              m.labelOfId('container:' + '3'.repeat(64), t.nodes, t.names),
              m.labelOfId('host:h', new Map([['host:h', host]]), t.names)];
    """)
    assert result == ["db", "web", "container 333333333333", "h"]


def test_names_of_containers_that_are_gone_are_forgotten_as_they_churn(page: Page) -> None:
    result = run(page, "model", NODES + """
      const t = new m.Topology();
      const C = (i) => 'container:' + String(i).padStart(64, '0');
      const P = (i) => 'process:h:' + i;
      t.apply({ reset: true, version: 0, view: 'processes', edges: {}, nodes: {
        'process:h:steady': node('process:h:steady', C('steady'), { metadata: { container_name: 'db' } }) } });
      let most = 0;
      for (let i = 1; i <= 500; i++) {  // each version: a new container's process, the last one's gone
        t.apply({ version: i, previous_version: i - 1,
                  add: { nodes: { [P(i)]: node(P(i), C(i), { metadata: { container_name: 'job-' + i } }) } },
                  remove: { nodes: i > 1 ? [P(i - 1)] : [] } });
        most = Math.max(most, t.names.size);
      }
      return [most, m.labelOfId(C('steady'), t.nodes, t.names), m.labelOfId(C(500), t.nodes, t.names)];
    """)
    most, steady, newest = result
    assert most <= 5  # two live containers; 500 came and went
    assert (steady, newest) == ("db", "job-500")


def test_layout_keeps_every_placed_node_where_it_is_while_others_come_and_go(page: Page) -> None:
    moved = run(page, "layout", NODES + """
      const l = new m.Layout();
      const nodes = new Map();
      for (let h = 0; h < 5; h++) for (let c = 0; c < 6; c++) {
        const id = `container:h${h}c${c}`; nodes.set(id, node(id, `host:h${h}`));
      }
      l.update(nodes, (n) => n.parent);
      const before = new Map([...l.positions].map(([id, p]) => [id, [p.x, p.y]]));
      for (const id of ['container:h1c0', 'container:h1c3', 'container:h4c5']) nodes.delete(id);
      for (let c = 0; c < 5; c++) nodes.set(`container:h9c${c}`, node(`container:h9c${c}`, 'host:h9'));
      nodes.set('container:h2c9', node('container:h2c9', 'host:h2'));
      const placed = l.update(nodes, (n) => n.parent);
      const moved = [...nodes.keys()].filter((id) => before.has(id)
        && (before.get(id)[0] !== l.position(id).x || before.get(id)[1] !== l.position(id).y));
      const gone = ['container:h1c0', 'container:h1c3'].filter((id) => l.position(id));
      return { moved, gone, placed: placed.length, groups: l.groups.size };
    """)
    assert moved == {"moved": [], "gone": [], "placed": 6, "groups": 6}


def test_layout_spaces_nodes_and_separates_groups(page: Page) -> None:
    result = run(page, "layout", NODES + """
      const l = new m.Layout(34);
      const nodes = new Map();
      for (let h = 0; h < 20; h++) for (let c = 0; c < 15; c++) nodes.set(`p:${h}-${c}`, node(`p:${h}-${c}`, `g:${h}`));
      l.update(nodes, (n) => n.parent);
      const points = [...l.positions.values()];
      let nearest = Infinity;
      for (let i = 0; i < points.length; i++) for (let j = i + 1; j < points.length; j++)
        nearest = Math.min(nearest, Math.hypot(points[i].x - points[j].x, points[i].y - points[j].y));
      const groups = [...l.groups.values()];
      let overlaps = 0;
      for (let i = 0; i < groups.length; i++) for (let j = i + 1; j < groups.length; j++)
        if (Math.hypot(groups[i].x - groups[j].x, groups[i].y - groups[j].y) < groups[i].radius + groups[j].radius) overlaps++;
      return { nearest, overlaps };
    """)
    assert result["nearest"] >= 20 and result["overlaps"] == 0


def test_a_group_that_outgrows_its_room_moves_whole_and_overlaps_no_other(page: Page) -> None:
    result = run(page, "layout", NODES + """
      const l = new m.Layout(34);
      const nodes = new Map();
      const add = (h, c) => nodes.set(`container:h${h}c${c}`, node(`container:h${h}c${c}`, `host:h${h}`));
      for (let h = 0; h < 6; h++) for (let c = 0; c < 4; c++) add(h, c);
      l.update(nodes, (n) => n.parent);
      const snapshot = () => new Map([...l.positions].map(([id, p]) => [id, [p.x, p.y]]));
      const before = snapshot();
      for (let c = 4; c < 60; c++) add(2, c);  // host h2 grows from 4 to 60 containers
      const placed = l.update(nodes, (n) => n.parent);
      const after = snapshot();
      const offset = (id, map) => [map.get(id)[0] - map.get('container:h2c0')[0], map.get(id)[1] - map.get('container:h2c0')[1]];
      const grown = [...before.keys()].filter((id) => id.startsWith('container:h2'));
      const others = [...before.keys()].filter((id) => !id.startsWith('container:h2'));
      const groups = [...l.groups.values()];
      let overlaps = 0;
      for (let i = 0; i < groups.length; i++) for (let j = i + 1; j < groups.length; j++)
        if (Math.hypot(groups[i].x - groups[j].x, groups[i].y - groups[j].y) < groups[i].radius + groups[j].radius) overlaps++;
      return {
        overlaps,
        groupMoved: after.get('container:h2c0')[0] !== before.get('container:h2c0')[0]
          || after.get('container:h2c0')[1] !== before.get('container:h2c0')[1],
        shapeKept: grown.every((id) => offset(id, before).every((v, i) => Math.abs(v - offset(id, after)[i]) < 1e-9)),
        othersMoved: others.filter((id) => before.get(id).some((v, i) => v !== after.get(id)[i])),
        placed: placed.length,
      };
    """)
    assert result == {"overlaps": 0, "groupMoved": True, "shapeKept": True, "othersMoved": [], "placed": 60}


def test_filters_search_every_word_in_names_labels_and_metadata(page: Page) -> None:
    result = run(page, "filter", NODES + """
      const nodes = [
        node('container:web-1', 'host:a', { metadata: { image: 'nginx:1.27', labels: { app: 'web', tier: 'front' } },
                                            metrics: { cpu_percent: 80 } }),
        node('container:db-1', 'host:a', { metadata: { image: 'postgres:17', labels: { app: 'db' } },
                                           metrics: { cpu_percent: 20 } }),
        node('process:a:1', 'container:web-1', { metadata: { name: 'nginx' } }),
      ];
      const ids = (state) => nodes.filter(m.compileFilter(state)).map((n) => n.id);
      return {
        none: m.compileFilter({}).active,
        words: ids({ q: 'NGINX front' }),
        labelValue: ids({ labels: ['app=db'] }),
        labelPresent: ids({ labels: ['tier'] }),
        metric: ids({ metric: 'cpu_percent', min: 50 }),
        type: ids({ type: 'process' }),
        labelText: ids({ q: 'app=web' }),
      };
    """)
    assert result == {"none": False, "words": ["container:web-1"], "labelValue": ["container:db-1"],
                      "labelPresent": ["container:web-1"], "metric": ["container:web-1"],
                      "type": ["process:a:1"], "labelText": ["container:web-1"]}


def test_url_state_round_trips_and_ignores_what_it_does_not_know(page: Page) -> None:
    result = run(page, "state", """
      const state = { ...m.DEFAULTS, view: 'containers', mode: 'table', q: 'web 1', labels: ['app=web', 'tier'],
                      metric: 'cpu_percent', min: 50, size: 'memory_mb', sort: 'status', dir: 'desc', node: 'container:x',
                      group: false, kthreads: true };
      const query = m.formatState(state);
      const bad = m.parseState('?view=nope&mode=3d&type=alien&metric=cpu;drop>=x&dir=sideways');
      return { same: JSON.stringify(m.parseState(query)) === JSON.stringify(state), query,
               bad, empty: m.formatState(m.DEFAULTS) };
    """)
    assert result["same"], result["query"]
    assert "group=0" in result["query"] and "kthreads=1" in result["query"]  # the processes view's toggles
    bad = result["bad"]
    assert (bad["view"], bad["mode"], bad["type"], bad["metric"], bad["min"], bad["dir"], bad["group"], bad["kthreads"]) == (
        "hosts", "graph", "", "", None, "asc", True, False)
    assert result["empty"] == ""


def test_each_view_shows_one_kind_of_node(page: Page) -> None:
    result = run(page, "state", """
      return [m.VIEWS.map(m.kindOf), ['host', 'container', 'process', 'pod', 'service', 'alien'].map(m.viewOf)];
    """)
    assert result == [["host", "container", "process", "pod", "service", None],
                      ["hosts", "containers", "processes", "pods", "services", "all"]]  # not "processs"


def test_health_colours_by_status_and_a_hot_cpu(page: Page) -> None:
    result = run(page, "health", """
      const of = (status, metrics = {}) => m.health({ status, metrics });
      return [of('running'), of('up', { cpu_usage: 80 }), of('running', { cpu_percent: 95 }), of('paused'),
              of('exited'), of('dead'), of('mystery'), of('exited', { cpu_percent: 99 }), of('sleeping'),
              of('zombie'), of('stopped')];
    """)
    assert result == ["healthy", "warning", "critical", "warning", "warning", "critical", "unknown", "warning",
                      "healthy", "critical", "warning"]


PROCESSES = NODES + """
const proc = (host, pid, name, extra = {}) => node(`process:${host}:${pid}`, `host:${host}`, {
  label: name, host: `host:${host}`, metadata: { pid, name, ...(extra.metadata || {}) },
  metrics: { cpu_percent: pid % 10, memory_mb: 10 }, ...(extra.node || {}) });
const kthread = (host, pid, name) => proc(host, pid, name, { metadata: { kernel_thread: true } });
const topology = (list) => new Map(list.map((n) => [n.id, n]));
const summary = (g) => [...g.nodes.values()].map((n) => [n.id, n.label, n.metrics.cpu_percent]).sort();
"""


def test_processes_of_one_name_on_one_host_are_one_node_and_kernel_threads_are_left_out(page: Page) -> None:
    result = run(page, "groups", PROCESSES + """
      const nodes = topology([proc('a', 11, 'nginx'), proc('a', 12, 'nginx'), proc('a', 13, 'nginx'),
        proc('a', 20, 'sshd'), proc('b', 31, 'nginx'), kthread('a', 2, 'kthreadd'), kthread('a', 3, 'kworker/0:0'),
        kthread('a', 4, 'kworker/0:0')]);
      const grouped = new m.ProcessGroups();
      grouped.reset(nodes);
      const all = new m.ProcessGroups({ group: false, kernel: true });
      all.reset(nodes);
      const group = grouped.nodes.get('processes:a:nginx');
      return { grouped: summary(grouped), kernel: grouped.kernelThreads.size, members: group.members.sort(),
               memory: group.metrics.memory_mb, isGroup: [m.isGroupId(group.id), m.isGroupId('process:a:11')],
               shownOf: [grouped.shownOf('process:a:12'), grouped.shownOf('process:a:20'), grouped.shownOf('process:a:2')],
               ungrouped: [...all.nodes.keys()].sort() };
    """)
    assert result["grouped"] == [
        ["process:a:20", "sshd", 0],  # the only one of its name: the process itself
        ["process:b:31", "nginx", 1],  # the same name on another host: not in the group
        ["processes:a:nginx", "nginx (3)", 1 + 2 + 3],  # CPU summed
    ]
    assert result["kernel"] == 3 and result["members"] == ["process:a:11", "process:a:12", "process:a:13"]
    assert result["memory"] == 30 and result["isGroup"] == [True, False]
    assert result["shownOf"] == ["processes:a:nginx", "process:a:20", None]
    assert result["ungrouped"] == sorted(["process:a:11", "process:a:12", "process:a:13", "process:a:20",
                                          "process:b:31", "process:a:2", "process:a:3", "process:a:4"])


def test_live_changes_update_the_groups_they_touch(page: Page) -> None:
    result = run(page, "groups", PROCESSES + """
      const nodes = topology([proc('a', 11, 'nginx'), proc('a', 12, 'nginx'), proc('a', 20, 'sshd'),
                              proc('a', 30, 'cron')]);
      const g = new m.ProcessGroups();
      g.reset(nodes);
      const steps = [];
      const step = (change) => {
        for (const id of change.removed || []) nodes.delete(id);
        for (const n of [...(change.add || []), ...(change.update || [])]) nodes.set(n.id, n);
        g.apply({ kind: 'diff', added: (change.add || []).map((n) => n.id), updated: (change.update || []).map((n) => n.id),
                  removed: change.removed || [], edges: 0 }, nodes);
        const sshd = g.nodes.get('processes:a:sshd');
        steps.push({ shown: summary(g), sshd: sshd ? [sshd.status, sshd.health] : null, kernel: g.kernelThreads.size });
      };
      step({ add: [proc('a', 21, 'sshd')] });  // sshd: its one process becomes a group of two
      step({ removed: ['process:a:12'] });  // nginx: a group of two becomes its one process
      step({ update: [proc('a', 21, 'sshd', { node: { status: 'zombie' } })] });  // a member's state colours its group
      step({ update: [proc('a', 21, 'sshd2')] });  // exec'd under another name: it moves to that name
      step({ removed: ['process:a:30'], add: [kthread('a', 40, 'kworker')] });
      return steps;
    """)
    assert result[0]["shown"] == [["process:a:30", "cron", 0], ["processes:a:nginx", "nginx (2)", 3],
                                  ["processes:a:sshd", "sshd (2)", 1]]
    assert result[0]["sshd"] == ["running", "healthy"]
    assert result[1]["shown"] == [["process:a:11", "nginx", 1], ["process:a:30", "cron", 0],
                                  ["processes:a:sshd", "sshd (2)", 1]]
    assert result[2]["sshd"] == ["zombie", "critical"]
    assert result[3]["shown"] == [["process:a:11", "nginx", 1], ["process:a:20", "sshd", 0],
                                  ["process:a:21", "sshd2", 1], ["process:a:30", "cron", 0]]
    assert result[4]["shown"] == [["process:a:11", "nginx", 1], ["process:a:20", "sshd", 0],
                                  ["process:a:21", "sshd2", 1]]
    assert result[4]["kernel"] == 1  # counted, not shown


def test_edges_join_the_nodes_they_are_shown_as(page: Page) -> None:
    result = run(page, "groups", PROCESSES + """
      const nodes = topology([proc('a', 11, 'web'), proc('a', 12, 'web'), proc('b', 20, 'db'),
                              kthread('a', 3, 'kworker')]);
      const edge = (source, target, connections = 1) => ({ id: `${source}->${target}`, source, target,
                                                           type: 'connection', connections });
      const edges = new Map([
        edge('process:a:11', 'process:b:20', 2), edge('process:a:12', 'process:b:20', 3),  // one edge: web -> db
        edge('process:a:11', 'process:a:12'),  // within the group: none
        edge('process:a:3', 'process:b:20'),  // from a hidden kernel thread: none
      ].map((e) => [e.id, e]));
      const g = new m.ProcessGroups();
      g.reset(nodes);
      const grouped = g.edges(edges).map((e) => [e.source, e.target, e.connections]);
      const again = g.edges(edges) === g.edges(edges);
      const flat = new m.ProcessGroups({ group: false });
      flat.reset(nodes);
      return { grouped, again, flat: flat.edges(edges) === edges };
    """)
    assert result == {"grouped": [["processes:a:web", "process:b:20", 5]], "again": True, "flat": True}


def test_layout_and_topology_say_when_what_the_graph_worked_out_from_them_may_have_changed(page: Page) -> None:
    result = run(page, "layout", NODES + """
      const { Topology } = await import('/ui/js/model.js');
      const l = new m.Layout();
      const nodes = new Map([['container:a', node('container:a', 'host:h')]]);
      const seen = [];
      const note = () => seen.push(l.generation);
      l.update(nodes, (n) => n.parent); note();
      l.update(new Map([['container:a', { ...nodes.get('container:a'), metrics: { cpu_percent: 9 } }]]), (n) => n.parent); note();
      nodes.set('container:b', node('container:b', 'host:h')); l.update(nodes, (n) => n.parent); note();
      nodes.delete('container:a'); l.update(nodes, (n) => n.parent); note();
      const t = new Topology();
      const versions = [];
      t.apply({ reset: true, version: 1, view: 'hosts', nodes: {}, edges: {} }); versions.push(t.edgeVersion);
      t.apply({ version: 2, previous_version: 1, update: { nodes: { 'host:h': node('host:h', null) } } }); versions.push(t.edgeVersion);
      t.apply({ version: 3, previous_version: 2, add: { edges: { 'a->b': { source: 'a', target: 'b' } } } }); versions.push(t.edgeVersion);
      return { layout: seen.map((g) => g - seen[0]), edges: versions.map((v) => v - versions[0]) };
    """)
    # A metric's change places nothing and changes no edge: nothing to work out again.
    assert result == {"layout": [0, 0, 1, 2], "edges": [0, 0, 1]}
