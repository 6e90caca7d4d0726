"""What keeps big views usable: work the graph did for the last render is not
done again for the next when what it depends on has not changed (the edges
between groups, while a filter is set); sizes that change at every version
are redrawn, but not at every version; the node under the pointer is found
among its neighbours, once a frame; the table lays out no graph and looks only
at the nodes a change names; and no stats are asked for while the server is away."""

from __future__ import annotations

import time

from tests.server_process import ServerProcess

from .conftest import Ui, post_report


def settled(ui: Ui) -> None:
    """Wait until nothing the page was asked to draw is still to be drawn."""
    ui.page.wait_for_function("() => trioscope.idle()")


def zoomed_out_to_dots(ui: Ui) -> None:
    """Zoom out until nodes are dots: the graph then draws the edges between groups."""
    for _ in range(16):
        ui.page.click("#zoom-out")
    ui.page.wait_for_function("() => trioscope.groupEdgeRuns() > 0")
    settled(ui)


def test_the_edges_between_groups_are_worked_out_once_per_filter_not_at_every_render(ui: Ui) -> None:
    for index in range(3):
        post_report(ui.server, index, peers=[(index + 1) % 3])
    ui.open("?view=all&q=host")
    ui.wait_for_nodes({"host:host-0", "host:host-1", "host:host-2"})
    zoomed_out_to_dots(ui)
    runs, draws = ui.page.evaluate("[trioscope.groupEdgeRuns(), trioscope.draws()]")
    # Renders with the same filter and the same nodes and edges (the page made a
    # new filter function for each, and the 199,000 edges of 1,000 hosts were
    # gone through again at each: 3.7 s of a 39 s profile).
    for size in ["cpu_percent", "", "cpu_percent", ""]:
        ui.page.select_option("#size-by", size)
        ui.page.wait_for_function("(d) => trioscope.draws() > d", arg=draws)
        settled(ui)
        draws = ui.page.evaluate("trioscope.draws()")
    assert ui.page.evaluate("trioscope.groupEdgeRuns()") == runs
    # Another filter: they are worked out again, once.
    ui.page.fill("#search", "host-1")
    ui.page.wait_for_function("() => new URLSearchParams(location.search).get('q') === 'host-1'")
    settled(ui)
    assert ui.page.evaluate("trioscope.groupEdgeRuns()") == runs + 1


def test_sizes_that_change_are_redrawn(ui: Ui) -> None:
    post_report(ui.server, 0, containers=2, container_load=0.0)
    ui.open("?view=containers&size=cpu_percent")
    ui.page.wait_for_function("() => trioscope.nodeIds().length === 2")
    settled(ui)
    # The smaller one (1.5 % of the other's 2.5 %) grows as both gain 50 %.
    first = ui.page.evaluate("trioscope.nodeIds().sort((a, b) => trioscope.radius(a) - trioscope.radius(b))[0]")
    draws, radius = ui.page.evaluate("(id) => [trioscope.draws(), trioscope.radius(id)]", first)
    post_report(ui.server, 0, containers=2, container_load=50.0)  # only their sizes change
    ui.page.wait_for_function("(d) => trioscope.draws() > d", arg=draws)
    assert ui.page.evaluate("(id) => trioscope.radius(id)", first) > radius


def test_finding_the_node_under_the_pointer_looks_only_at_the_nodes_near_it(ui: Ui) -> None:
    for index in range(2):
        post_report(ui.server, index, processes=150)
    ui.open("?view=processes&group=0")
    ui.page.wait_for_function("() => trioscope.nodeIds().length >= 300")
    settled(ui)
    ids = ui.page.evaluate("trioscope.nodeIds()")
    target = sorted(ids)[len(ids) // 2]
    at = ui.positions({target})[target]
    found = ui.page.evaluate("([x, y]) => trioscope.hitTest(x, y)", list(at))
    assert found["id"] == target
    assert found["indexed"] == len(ids)
    # Going through every node took 15 ms a pointer move in the All view (161 ms with
    # "size by" set): the ones in the cells around the pointer are a few.
    assert 0 < found["consulted"] <= 40
    # Hovering still finds it, and says which it is.
    ui.page.mouse.move(*at)
    ui.page.wait_for_function("() => document.querySelector('#canvas').classList.contains('pointing')")
    assert ui.page.get_attribute("#canvas", "title")


def test_pointer_moves_within_a_frame_are_hit_tested_once(ui: Ui) -> None:
    post_report(ui.server, 0)
    ui.open("?view=containers")
    ui.wait_for_nodes(set(ui.page.evaluate("trioscope.nodeIds()")))
    settled(ui)
    before = ui.page.evaluate("trioscope.hoverTests()")
    # 40 moves dispatched in one task: one frame can follow them.
    ui.page.evaluate("""() => { const c = document.getElementById('canvas'); const r = c.getBoundingClientRect();
      for (let i = 0; i < 40; i++) c.dispatchEvent(new PointerEvent('pointermove',
        { clientX: r.left + 100 + i * 7, clientY: r.top + 100 + i * 5, bubbles: true })); }""")
    ui.page.wait_for_function("(b) => trioscope.hoverTests() > b", arg=before)
    ui.page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    assert ui.page.evaluate("trioscope.hoverTests()") == before + 1


def test_the_table_lays_out_no_graph_and_looks_only_at_the_nodes_a_change_names(ui: Ui) -> None:
    for index in range(2):
        post_report(ui.server, index, containers=4, processes=100)
    ui.open("?view=processes&group=0&mode=table")
    ui.page.wait_for_function("() => trioscope.nodeIds().length >= 200 && trioscope.rendered(trioscope.nodeIds()[0])")
    settled(ui)
    total = len(ui.page.evaluate("trioscope.nodeIds()"))
    updates = ui.page.evaluate("trioscope.layoutUpdates()")
    # A process starts on host 0: a row comes.
    post_report(ui.server, 0, containers=4, processes=101)
    ui.page.wait_for_function("(n) => trioscope.nodeIds().length > n && trioscope.rendered(trioscope.nodeIds()[0])"
                              " && document.querySelector('#table').getAttribute('aria-rowcount') === String(n + 2)",
                              arg=total)
    settled(ui)
    # No layout for a graph that is not shown (it took 206 of 811 ms of rendering the All view's table).
    assert ui.page.evaluate("trioscope.layoutUpdates()") == updates
    # The table looked at the nodes the change named, not at every node of the view.
    assert ui.page.evaluate("trioscope.tableLooked()") < total
    # Shown again, the graph places every node.
    ui.page.click("#mode-graph")
    ui.page.wait_for_function("() => trioscope.nodeIds().every((id) => trioscope.position(id))")
    assert ui.page.evaluate("trioscope.layoutUpdates()") > updates


def test_no_stats_are_asked_for_while_the_live_socket_is_down_and_again_once_it_is_back(ui: Ui) -> None:
    ui.expected += ["WebSocket connection", "ERR_CONNECTION_REFUSED"]
    post_report(ui.server, 0)
    ui.open()
    ui.page.wait_for_selector("#connection[data-state=live]")
    asked: list[str] = []
    sockets: list[str] = []
    ui.page.on("request", lambda request: asked.append(request.url) if "/query/stats" in request.url else None)
    ui.page.on("websocket", lambda socket: sockets.append(socket.url) if "/api/v1/ws" in socket.url else None)
    port = ui.server.base_url.rsplit(":", 1)[1]
    ui.server.stop()
    # The socket tries again after 0.5, 1, 2 and 4 s (with jitter): more than a poll's
    # 5 s have passed by its fifth try (the page asked for the stats every 5 s of an outage).
    deadline = time.monotonic() + 30
    while len(sockets) < 5:
        assert time.monotonic() < deadline, "the socket stopped trying"
        ui.page.wait_for_timeout(100)  # the next look at the condition
    assert asked == []
    with ServerProcess(args=["--port", port]) as again:  # back, at the same address
        ui.server = again
        ui.page.wait_for_selector("#connection[data-state=live]", timeout=30_000)
        deadline = time.monotonic() + 15
        while not asked:  # once connected again, the stats bar is brought up to date
            assert time.monotonic() < deadline, "no stats once the socket was back"
            ui.page.wait_for_timeout(100)
