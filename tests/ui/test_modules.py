"""The UI's pure modules (model, layout, filter, URL state), run in the browser
they ship to, imported from the real server exactly as the page imports them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.server_process import ServerProcess
from trioscope.domain.topology import process_group_id


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
              m.labelOfId('host:h', new Map([['host:h', host]]), t.names),
              // An enrolled probe's ids end in its tenant's scope: no part of the name shown.
              m.labelOfId('container:' + '4'.repeat(64) + '@822b33ad87c1', t.nodes, t.names),
              m.labelOfId('host:web-1@822b33ad87c1', t.nodes, t.names),
              m.labelOfId('process_group:web-1@822b33ad87c1:nginx', t.nodes, t.names),
              m.labelOfId('host:a%40b%25c@822b33ad87c1', t.nodes, t.names)];
    """)
    assert result == ["db", "web", "container 333333333333", "h", "container 444444444444", "web-1",
                      "web-1:nginx", "a@b%c"]


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


def test_url_parameters_naming_no_view_display_or_type_are_listed(page: Page) -> None:
    result = run(page, "state", """
      return [m.unknownParams('?view=nope&mode=3d&type=alien&dir=sideways&q=x'),
              m.unknownParams('?view=containers&mode=table&type=host'), m.unknownParams('?view=')];
    """)
    assert result == [[{"name": "view", "value": "nope"}, {"name": "mode", "value": "3d"},
                       {"name": "type", "value": "alien"}], [], []]


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


def test_a_host_whose_container_engine_does_not_answer_is_a_warning_and_says_so(page: Page) -> None:
    result = run(page, "engine", """
      const { health } = await import('/ui/js/health.js');
      const host = (engine, metrics = {}) => ({ type: 'host', status: 'up', metrics,
        metadata: engine ? { container_engine: engine, container_engine_problem: 'socket gone' } : {} });
      const container = (status, metadata) => ({ type: 'container', status, metrics: {}, metadata });
      const nodes = [host('unreachable'), host('reachable'), host(null), host('unreachable', { cpu_usage: 95 }),
                     container('unknown', { last_state: 'paused' }), container('unknown', {}),
                     container('running', {})];
      return nodes.map((n) => [health(n), m.statusText(n), m.statusNote(n), m.stale(n), m.engineDown(n),
                               m.statusTitle(n)]);
    """)
    down = "up, container engine unreachable"
    assert result == [
        ["warning", down, "engine unreachable", False, True, f"{down}: socket gone"],
        ["healthy", "up", "", False, False, "up"],
        ["healthy", "up", "", False, False, "up"],  # no engine configured
        ["critical", down, "engine unreachable", False, True, f"{down}: socket gone"],
        ["unknown", "unknown (last: paused)", "", True, False, "unknown (last: paused)"],
        ["unknown", "unknown", "", False, False, "unknown"],  # a state the probe did not know: not stale
        ["healthy", "running", "", False, False, "running"],
    ]


PROCESSES = NODES + """
const proc = (host, pid, name, extra = {}) => node(`process:${host}:${pid}`, `host:${host}`, {
  label: name, host: `host:${host}`, metadata: { pid, name, ...(extra.metadata || {}) },
  metrics: { cpu_percent: pid % 10, memory_mb: 10 }, ...(extra.node || {}) });
const kthread = (host, pid, name) => proc(host, pid, name, { metadata: { kernel_thread: true } });
const group = (host, name, pids, extra = {}) => node(`process_group:${host}:${name}`, `host:${host}`, {
  type: 'process_group', label: name, host: `host:${host}`, status: 'sleeping',
  metadata: { name, pids, statuses: { sleeping: pids.length }, ...(extra.metadata || {}) },
  metrics: { cpu_percent: 1, cpu_percent_max: 1, processes: pids.length }, ...(extra.node || {}) });
const topology = (list) => new Map(list.map((n) => [n.id, n]));
const summary = (g) => [...g.nodes.values()].map((n) => [n.id, n.label]).sort();
"""


def test_groups_from_the_server_are_labelled_with_their_count(page: Page) -> None:
    result = run(page, "groups", PROCESSES + """
      const nodes = topology([group('a', 'nginx', [11, 12, 13]), group('a', 'sshd', [20]), group('b', 'nginx', [31])]);
      const shown = new m.ProcessesShown();
      shown.reset(nodes);
      const before = summary(shown);
      nodes.set('process_group:a:sshd', group('a', 'sshd', [20, 21]));
      nodes.delete('process_group:b:nginx');
      shown.apply({ kind: 'diff', added: [], updated: ['process_group:a:sshd'], removed: ['process_group:b:nginx'] }, nodes);
      return { before, after: summary(shown), server: nodes.get('process_group:a:sshd').label,
               isGroup: [m.isGroupId('process_group:a:sshd'), m.isGroupId('process:a:11')],
               members: m.memberIds(nodes.get('process_group:a:nginx')),
               showing: [m.groupShowing(shown.nodes, 'process:a:12'), m.groupShowing(shown.nodes, 'process:b:12'),
                         m.groupShowing(shown.nodes, 'host:a')],
               views: [m.processesView(true), m.processesView(false)] };
    """)
    assert result["before"] == [["process_group:a:nginx", "nginx (3)"], ["process_group:a:sshd", "sshd"],
                                ["process_group:b:nginx", "nginx"]]
    assert result["after"] == [["process_group:a:nginx", "nginx (3)"], ["process_group:a:sshd", "sshd (2)"]]
    assert result["server"] == "sshd"  # the topology's node is left as the server sent it
    assert result["isGroup"] == [True, False]
    assert result["members"] == ["process:a:11", "process:a:12", "process:a:13"]
    assert result["showing"] == ["process_group:a:nginx", None, None]
    assert result["views"] == ["processes-by-name", "processes"]


def test_kernel_threads_of_the_ungrouped_view_are_hidden_unless_asked_for(page: Page) -> None:
    result = run(page, "groups", PROCESSES + """
      const nodes = topology([proc('a', 11, 'nginx'), proc('a', 20, 'sshd'), kthread('a', 2, 'kthreadd'),
                              kthread('a', 3, 'kworker/0:0')]);
      const hidden = new m.ProcessesShown();
      hidden.reset(nodes);
      const shown = new m.ProcessesShown({ kernel: true });
      shown.reset(nodes);
      nodes.delete('process:a:3');
      nodes.set('process:a:40', kthread('a', 40, 'kworker'));
      hidden.apply({ kind: 'diff', added: ['process:a:40'], updated: [], removed: ['process:a:3'] }, nodes);
      return { hidden: [...hidden.nodes.keys()].sort(), kernel: hidden.kernelThreads.size,
               shown: [...shown.nodes.keys()].sort() };
    """)
    assert result == {"hidden": ["process:a:11", "process:a:20"], "kernel": 2,
                      "shown": ["process:a:11", "process:a:2", "process:a:20", "process:a:3"]}


def test_a_group_is_coloured_by_its_worst_process_and_found_by_its_pids(page: Page) -> None:
    result = run(page, "health", PROCESSES + """
      const { compileFilter } = await import('/ui/js/filter.js');
      const of = (statuses, max) => m.health(group('a', 'w', [1, 2], { metadata: { statuses },
        node: { metrics: { cpu_percent: 160, cpu_percent_max: max } } }));
      const workers = group('a', 'worker', [1000, 1013]);
      return { health: [of({ sleeping: 2 }, 20), of({ sleeping: 1, zombie: 1 }, 20), of({ sleeping: 2 }, 80),
                        of({ running: 1, stopped: 1 }, 95)],
               found: [compileFilter({ q: 'pids=1013' })(workers), compileFilter({ q: 'pids=1014' })(workers)] };
    """)
    # Summed CPU (160 %) colours nothing: the busiest process (cpu_percent_max) does.
    assert result == {"health": ["healthy", "critical", "warning", "warning"], "found": [True, False]}


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


def test_a_series_is_selected_alone_and_its_range_laid_on_the_steps(page: Page) -> None:
    result = run(page, "promql", """
      const labels = { __name__: 'requests_count', route: '/say"hi\\\\', tenant: 'acme', deployment_hash: 'd1',
                       agent_id: 'agent-0' };
      const odd = { __name__: 'odd.name', agent_id: 'a' };
      return [m.exactSelector(labels, ['code', 'route', 'code']), m.exactSelector(odd),
              m.seriesLabel(labels), m.seriesKey(labels) === m.seriesKey({ ...labels, agent_id: 'agent-9' }),
              m.sameLabels(labels, { ...labels }), m.sameLabels(labels, { ...labels, code: '' }),
              m.valuesOnGrid([[100, '1'], [130, '2.5'], [160, 'NaN'], [400, '9']], 100, 175, 15)];
    """)
    assert result[0] == ('requests_count{agent_id="agent-0",deployment_hash="d1",route="/say\\"hi\\\\",'
                         'tenant="acme",code=""}')
    assert result[1] == '{__name__="odd.name",agent_id="a"}'
    assert result[2] == 'requests_count{route="/say\\"hi\\\\"}'  # the node's own labels left out
    assert result[3:6] == [True, True, False]
    assert result[6] == [1, None, 2.5, None, None, None]


def test_a_diff_of_metrics_moves_no_row_of_a_table_sorted_by_name(page: Page) -> None:
    # A view of 116,000 nodes sorted all over again at every diff could not keep up with the live stream.
    result = run(page, "table", NODES + """
      const t = new m.TableView(document.getElementById('table'), { onSelect() {}, onSort() {} });
      const all = new Map();
      for (let i = 0; i < 3000; i++) {
        const id = 'process:h:' + i;
        all.set(id, node(id, 'host:h', { label: 'p' + ((i * 7919) % 3000), metrics: { cpu_percent: i % 97 } }));
      }
      const show = (sort, dir, key = 'f', touched = null) => t.setData({ all, shows: () => true, names: new Map(),
        metrics: ['cpu_percent'], showType: false, sort, dir, selected: '', key, touched });
      const fresh = (sort, dir) => {  // what a new table makes of the same rows
        const other = new m.TableView(document.getElementById('table'), { onSelect() {}, onSort() {} });
        other.setData({ all, shows: () => true, names: new Map(), metrics: ['cpu_percent'], showType: false,
          sort, dir, selected: '', key: 'f' });
        return other.rows.map((r) => r.id).join();
      };
      const ids = () => t.rows.map((r) => r.id).join();
      show('label', 'asc');
      const sorts = t.sorts;
      for (let v = 0; v < 5; v++) {  // metrics change: nothing moves, nothing is sorted
        for (let i = v; i < 3000; i += 3) {
          const n = all.get('process:h:' + i);
          all.set(n.id, { ...n, metrics: { cpu_percent: Math.random() * 100 } });
        }
        show('label', 'asc');
      }
      const metricsOnly = [t.sorts - sorts, t.moved, ids() === fresh('label', 'asc')];
      show('cpu_percent', 'desc');  // another column: sorted afresh
      const resorted = t.sorts - sorts;
      // By CPU, a few rows come, go and change: they alone move, to where a full sort puts them.
      const before = t.sorts;
      all.delete('process:h:5'); all.delete('process:h:6');
      all.set('process:h:new', node('process:h:new', 'host:h', { label: 'zz', metrics: { cpu_percent: 50 } }));
      all.set('process:h:blank', node('process:h:blank', 'host:h', { label: 'aa', metrics: {} }));
      for (const i of [1, 2, 3, 500]) {
        const n = all.get('process:h:' + i);
        all.set(n.id, { ...n, label: 'q' + i, metrics: { cpu_percent: (i * 13) % 100 } });
      }
      // Told which nodes the changes named, the table looks at those alone.
      const named = new Set(['process:h:5', 'process:h:6', 'process:h:new', 'process:h:blank', 'process:h:1',
                             'process:h:2', 'process:h:3', 'process:h:500']);
      show('cpu_percent', 'desc', 'f', named);
      const few = [t.sorts - before, t.moved, ids() === fresh('cpu_percent', 'desc'), t.rows.length,
                   t.rows[t.rows.length - 1].id, t.looked];
      show('cpu_percent', 'desc', 'other filters');
      return { metricsOnly, resorted, few, refiltered: t.sorts - before };
    """)
    assert result["metricsOnly"] == [0, 0, True]
    assert result["resorted"] == 1
    assert result["few"] == [0, 8, True, 3000, "process:h:blank", 8]  # 2 gone, 2 new, 4 changed; blanks last
    assert result["refiltered"] == 1


def test_label_filters_ask_for_the_nodes_own_labels_not_an_objects_built_in_names(page: Page) -> None:
    result = run(page, "filter", NODES + """
      const nodes = [node('container:web-1', 'host:web-host', { metadata: { labels: { app: 'web' } } }),
                     node('container:db-1', 'host:db-host', { metadata: {} })];
      const ids = (state) => nodes.filter(m.compileFilter(state)).map((n) => n.id);
      return { builtIns: ['constructor', 'toString', '__proto__', 'hasOwnProperty'].map((key) => ids({ labels: [key] })),
               own: ids({ labels: ['app'] }), parent: ids({ q: 'web-host' }) };
    """)
    assert result["builtIns"] == [[], [], [], []]
    assert result["own"] == ["container:web-1"]
    assert result["parent"] == ["container:web-1"]  # the host's name, as the Parent column shows it


def test_url_state_keeps_any_minimum_and_a_metric_chosen_without_one(page: Page) -> None:
    result = run(page, "state", """
      const back = (changes) => {
        const state = { ...m.DEFAULTS, ...changes };
        const query = m.formatState(state);
        const parsed = m.parseState(query);
        return [query, parsed.metric, parsed.min];
      };
      return [back({ metric: 'cpu_percent', min: 1e21 }), back({ metric: 'cpu_percent', min: -2.5e-7 }),
              back({ metric: 'memory_mb', min: null })];
    """)
    assert [r[1:] for r in result] == [["cpu_percent", 1e21], ["cpu_percent", -2.5e-7], ["memory_mb", None]]
    assert result[2][0] == "?metric=memory_mb"


def test_counts_read_as_whole_numbers_and_every_percent_has_its_sign(page: Page) -> None:
    result = run(page, "format", """
      return [m.metricValue('processes', 13), m.metricValue('cpu_percent_max', 42.25), m.metricValue('cpu_percent', 13),
              m.metricValue('load', 1.5), m.metricValue('memory_mb', 512), m.metricValue('containers', 2)];
    """)
    assert result == ["13", "42.3%", "13.0%", "1.50", "512 MiB", "2"]


def test_bytes_are_named_in_powers_of_1024_and_a_rounded_1024_is_the_next_unit(page: Page) -> None:
    """"MB" said a million where the number was 2^20; 1,048,575 B/s read "1024 KB/s"."""
    result = run(page, "format", """
      return [m.bytes(125000000), m.bytes(1048575), m.bytes(1023.9), m.bytes(8192 * 1024 * 1024), m.bytes(512),
              m.metricValue('network_rx_bytes_per_sec', 1500)];
    """)
    assert result == ["119 MiB", "1.0 MiB", "1.0 KiB", "8.0 GiB", "512 B", "1.5 KiB/s"]


def test_every_metric_has_a_name_of_its_own_and_others_one_made_from_their_key(page: Page) -> None:
    result = run(page, "format", """
      const names = Object.values(m.METRIC_NAMES);
      return [names.length, new Set(names).size, m.metricLabel('memory_mb'), m.metricLabel('cpu_percent_max'),
              m.metricLabel('gpu_temp_c'), m.metricLabel('queue_bytes_per_sec'), m.metricLabel('constructor')];
    """)
    assert result[0] == result[1]  # no two columns under one header
    assert result[2:] == ["Memory", "CPU % (max)", "gpu temp c", "queue /s", "constructor"]


def test_signing_out_forgets_the_last_users_commands(page: Page) -> None:
    result = run(page, "controls", """
      const c = new m.Controls({ confirm() {}, output() {} });
      c.commands.set('cmd_1', { id: 'cmd_1', action: 'exec', parameters: { argv: ['cat', '/secret'] } });
      c.early.set('cmd_2', [{ type: 'command_progress' }]);
      c.setPrincipal(null);
      return [c.commands.size, c.early.size];
    """)
    assert result == [0, 0]



def test_a_slow_draw_is_coalesced_and_leaves_as_much_time_again_to_the_socket(page: Page) -> None:
    # 150,000 processes took 1-3 s a draw: drawing at every diff left the socket unread.
    result = run(page, "pacer", """
      let clock = 0;
      const frames = [], timers = [], runs = [];
      const p = new m.Pacer(() => { runs.push(clock); clock += 1000; }, {
        now: () => clock, frame: (f) => frames.push(f), later: (f, ms) => timers.push([clock + ms, f]) });
      // 42 diffs, one every 96 ms; the browser's frames every 16 ms run what waits for them.
      for (let t = 0; t < 4000; t += 16) {
        if (clock < t) clock = t;
        if (t % 96 === 0) p.request();
        for (const [at, f] of timers.splice(0)) { if (at <= clock) f(); else timers.push([at, f]); }
        for (const f of frames.splice(0)) f();
      }
      const gaps = runs.slice(1).map((start, i) => start - (runs[i] + 1000));
      // Asked for while running: drawn once more after it, not lost.
      let inner = 0;
      const q = new m.Pacer(() => { if (inner++ === 0) q.request(); }, { now: () => 0, frame: (f) => f(), later: () => {} });
      q.request();
      return { runs: runs.length, gaps, inner };
    """)
    assert 2 <= result["runs"] <= 3  # 42 requests in 4 s of 1 s draws: coalesced
    assert all(gap >= 1000 for gap in result["gaps"])  # never sooner after a draw than it took
    assert result["inner"] == 2


def test_control_and_bidi_characters_in_names_are_shown_as_escapes(page: Page) -> None:
    result = run(page, "format", r"""
      return [m.visible('evil\u202Egnp.exe'), m.visible('a\u0000b\nc\u200Bd\u2028'), m.visible('café 東京 🙂 x-y_z'),
              m.visible(undefined), m.visible(42)];
    """)
    assert result == ["evil\\u202Egnp.exe", "a\\u0000b\\u000Ac\\u200Bd\\u2028", "café 東京 🙂 x-y_z", "", "42"]


def test_output_of_many_lines_keeps_its_line_breaks_and_tabs_but_shows_other_invisibles(page: Page) -> None:
    """A command's output and error, and a container's log line, were shown as
    sent: ``invoice\u202Efdp.exe`` read "invoiceexe.pdf", and a log message
    with a newline faked a line of its own (the log uses ``visible``)."""
    result = run(page, "format", r"""
      return [m.visibleLines('line 1\r\n\tline 2\ninvoice\u202Efdp.exe\u0007'), m.visibleLines(null)];
    """)
    assert result == ["line 1\r\n\tline 2\ninvoice\\u202Efdp.exe\\u0007", ""]


def test_joiners_are_kept_and_a_shortened_name_never_ends_in_half_an_escape(page: Page) -> None:
    result = run(page, "format", r"""
      const persian = 'می\u200Cخواهم', family = '👩\u200D👩\u200D👧', heart = '❤\uFE0F';
      return [m.visible(persian) === persian, m.visible(family) === family, m.visible(heart) === heart,
              m.visible('a\u200Bb\u2066c\uFEFF\u{E0041}'),
              m.visibleShort('ab\u202Ecdefgh', 6), m.visibleShort('abcd\u202Eefgh', 8), m.visibleShort('short', 6),
              m.visibleShort('🙂🙂🙂🙂', 3), m.visibleShort('x\u202E', 24)];
    """)
    assert result[:3] == [True, True, True]  # ZWNJ, ZWJ and the emoji presentation selector as they are
    assert result[3] == "a\\u200Bb\\u2066c\\uFEFF\\uE0041"  # other zero-width, bidi isolate, BOM, tag: escaped
    # Cut between characters: a whole escape or none of it, a whole emoji or none of it.
    assert result[4:] == ["ab…", "abcd…", "short", "🙂…", "x\\u202E"]


def test_characters_that_show_as_nothing_are_escaped_so_a_name_cannot_pass_for_another(page: Page) -> None:
    """``db-prod`` with a combining grapheme joiner, a variation selector, a
    Mongolian one or a Hangul filler looked like ``db-prod`` itself."""
    result = run(page, "format", r"""
      return [m.visible('db-prod\u034F'), m.visible('db-prod\u{E0100}'), m.visible('db\u180Bprod'),
              m.visible('db\u3164prod'), m.visible('x\uFE01'), m.visibleLines('a\u034F\nb')];
    """)
    assert result == ["db-prod\\u034F", "db-prod\\uE0100", "db\\u180Bprod", "db\\u3164prod", "x\\uFE01",
                      "a\\u034F\nb"]


def test_why_a_live_log_ended_is_the_agents_text_escaped_and_cut(page: Page) -> None:
    """The agent writes it (up to 64 KB); it was shown as sent, an object as "[object Object]"."""
    result = run(page, "livelog", r"""
      const log = new m.LiveLog();
      log.render({ id: 'container:c', label: 'c' });
      const said = [];
      for (const ended of ['evil\u202E' + 'x'.repeat(1000), { reason: 'limit' }]) {
        log.follow = { id: 'c1' };
        log.event({ type: 'command_completed', command_id: 'c1', result: { ended } });
        said.push(log.state.textContent);
      }
      return said;
    """)
    assert result[0].startswith("ended: evil\\u202Exxx") and result[0].endswith("…") and len(result[0]) <= 207
    assert result[1] == 'ended: {"reason":"limit"}'


def test_a_process_on_a_host_whose_name_holds_a_colon_is_found_in_its_group(page: Page) -> None:
    result = run(page, "groups", NODES + """
      const group = (id, host, pids) => node(id, 'host:' + host, { type: 'process_group', host: 'host:' + host,
        metadata: { pids } });
      // As the server's process_group_id writes them: the host's '%' and ':' escaped.
      const nodes = new Map([
        ['process_group:a:b:worker', group('process_group:a:b:worker', 'a', [12])],  // host a's "b:worker"
        ['process_group:a%3Ab:worker', group('process_group:a%3Ab:worker', 'a:b', [12, 13])],
        ['process_group:50%25%3Ax:w', group('process_group:50%25%3Ax:w', '50%:x', [7])]]);
      return [m.groupShowing(nodes, 'process:a:b:13'), m.groupShowing(nodes, 'process:a:b:12'),
              m.groupShowing(nodes, 'process:a:12'), m.groupShowing(nodes, 'process:50%:x:7'),
              m.groupId('a:b', 'worker'), m.groupId('plain', 'w:1'), m.groupId('h', 'a->b%')];
    """)
    assert result == ["process_group:a%3Ab:worker", "process_group:a%3Ab:worker", "process_group:a:b:worker",
                      "process_group:50%25%3Ax:w", "process_group:a%3Ab:worker", "process_group:plain:w:1",
                      process_group_id("h", "a->b%")]
    assert result[-1] == "process_group:h:a-%3Eb%25"  # no node id holds an edge id's "->"


def test_the_rows_keep_the_keyboard_focus_when_the_columns_change(page: Page) -> None:
    result = run(page, "table", NODES + """
      // A table of its own (the page's is hidden, and earlier tests' views watch it), out
      // from under the modal sign-in (which makes the rest of the page unfocusable).
      const signin = document.getElementById('signin');
      signin.close();
      const root = document.getElementById('table').cloneNode(true);
      root.hidden = false;
      root.style.height = '400px';
      root.style.display = 'flex';
      document.body.append(root);
      try {
        const t = new m.TableView(root, { onSelect() {}, onSort() {} });
        const all = new Map();
        for (let i = 0; i < 20; i++) {
          const id = 'container:c' + i;
          all.set(id, node(id, 'host:h', { metrics: { cpu_percent: i } }));
        }
        const show = (metrics, sort) => t.setData({ all, shows: () => true, names: new Map(), metrics,
          showType: false, sort, dir: 'asc', selected: '', key: 'k' });
        show(['cpu_percent'], 'cpu_percent');
        await new Promise((resolve) => requestAnimationFrame(resolve));
        root.querySelector('#table-body .tr[data-id="container:c3"]').focus();
        const focused = () => [document.activeElement.dataset.id || document.activeElement.tagName,
                               root.contains(document.activeElement)];
        const before = focused();
        show(['cpu_percent', 'memory_mb'], 'cpu_percent');  // a metric came: a column more
        const added = focused();
        show(['memory_mb'], 'cpu_percent');  // the sorted column went
        return [before, added, focused()];
      } finally {
        root.remove();
        signin.showModal();
      }
    """)
    assert result == [["container:c3", True]] * 3


def test_alerts_and_the_series_picker_show_control_and_bidi_characters_as_escapes(page: Page) -> None:
    series = [{"__name__": "requests_count", "agent_id": "agent-0", "route": "/a\u202eb"}]
    page.route("**/prometheus/api/v1/series?**", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps({"status": "success", "data": series})))
    page.route("**/prometheus/api/v1/query_range?**", lambda route: route.fulfill(
        status=200, content_type="application/json",
        body=json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}})))
    try:
        result = run(page, "alerts", r"""
          const { SeriesChart } = await import('/ui/js/series.js');
          const root = document.getElementById('alerts').cloneNode(true);
          const list = new m.AlertList(root);
          list.event({ type: 'system_alert', fingerprint: 'f1', alert: 'Disk\u202EFull', message: 'on web\u2066-1\n!',
                       severity: 'critical' });
          const chart = new SeriesChart();
          await chart.refresh('agent-0');  // listed
          chart.choice = chart.picker.options[1].value;
          await chart.refresh('agent-0');  // and the chosen one drawn
          return [root.querySelector('li b').textContent, root.querySelector('.alert-message').textContent,
                  chart.picker.options[1].textContent, chart.chart.querySelector('.series-name').textContent];
        """)
    finally:
        page.unroute("**/prometheus/api/v1/series?**")
        page.unroute("**/prometheus/api/v1/query_range?**")
    assert result == ["Disk\\u202EFull", "on web\\u2066-1\\u000A!", 'requests_count{route="/a\\u202Eb"}',
                      'requests_count{route="/a\\u202Eb"}']


def test_a_sparkline_lays_samples_out_by_time_and_breaks_past_its_step(page: Page) -> None:
    result = run(page, "dom", """
      const drawn = (samples, axis) => {
        const svg = m.sparkline(samples, { width: 100, height: 24, ...axis });
        return [svg.dataset.points, svg.dataset.runs,
                [...svg.querySelectorAll('polyline')].map(l => l.getAttribute('points').split(' ').map(p => Number(p.split(',')[0])))];
      };
      return [
        drawn([[0, 1], [10, 2], [30, 3], [60, 4], [100, 5]], { start: 0, end: 100, maxStep: 20 }),
        drawn([[0, 1], [10, null], [20, 3], [30, 4]], { start: 0, end: 100 }),
        drawn([[50, 1]], { start: 0, end: 100 }),
      ];
    """)
    # x is time; a step of 20 is bridged, 30 and 40 are gaps; the lone sample between them is a dot.
    assert result[0] == ["5", "3", [[0, 10, 30], [60, 60], [100, 100]]]
    assert result[1] == ["3", "2", [[0, 0], [20, 30]]]  # a value that is no number breaks the line too
    assert result[2] == ["1", "0", []]  # one sample: no line


def test_a_line_joins_samples_within_twice_their_usual_spacing(page: Page) -> None:
    """A fixed two buckets drew a probe reporting every 60 s as lone dots, as if it flapped."""
    result = run(page, "dom", """
      return [m.joinWithin([0, 60, 120, 180, 600, 660], 15), m.joinWithin([0, 15, 30, 45], 15), m.joinWithin([7], 15),
              m.sparkline([[0, 1], [60, 2], [120, 3], [600, 4]], { start: 0, end: 600,
                          maxStep: m.joinWithin([0, 60, 120, 600], 15) }).dataset.runs];
    """)
    assert result == [120, 30, 30, "2"]  # every 60 s: one line; a gap of 8 minutes: a break


def test_sizes_changing_at_every_version_are_redrawn_at_most_once_a_second(page: Page) -> None:
    # With "size by" set, most nodes' sizes change at each version (3.5 a second):
    # redrawing 116,000 nodes at each locked the page.
    result = run(page, "pacer", """
      let clock = 0;
      const timers = [], runs = [];
      const t = new m.Throttle(() => runs.push(clock), 1000, {
        now: () => clock, later: (f, ms) => (timers.push([clock + ms, f]), timers.length), cancel: () => timers.splice(0) });
      const tick = (to) => { for (; clock < to; clock += 10) {
        for (const [at, f] of timers.splice(0)) { if (at <= clock) f(); else timers.push([at, f]); } } };
      for (let at = 0; at < 3000; at += 280) { tick(at); t.request(); } // a version every 280 ms
      tick(5000);
      const quiet = runs.length;
      t.request(); // after a quiet while: at once
      const atOnce = runs.length - quiet;
      t.request(); t.done(); tick(8000); // drawn meanwhile by a render: nothing more to do
      return { runs, atOnce, after: runs.length - quiet - atOnce };
    """)
    gaps = [b - a for a, b in zip(result["runs"], result["runs"][1:])]
    assert 3 <= len(result["runs"]) <= 5 and all(gap >= 1000 for gap in gaps)
    assert result["atOnce"] == 1 and result["after"] == 0


def test_the_probe_command_offered_quotes_an_ipv6_origin_for_the_shell(page: Page) -> None:
    """``--server http://[::1]:8080`` pasted into zsh failed: "no matches found"."""
    commands = run(page, "empty", """
        const principal = { role: 'ADMIN', tenant: 't', user_id: 'u', permissions: ['operate'] };
        return ['http://[::1]:8080', 'http://127.0.0.1:8080', "http://a'b"].map(
          (origin) => m.emptyAdvice(null, principal, origin).command);""")
    assert commands[0].endswith("--server 'http://[::1]:8080'")
    assert commands[1].endswith("--server http://127.0.0.1:8080")
    assert "'http://a'\\''b'" in commands[2]
