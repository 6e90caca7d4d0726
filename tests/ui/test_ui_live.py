"""What the page says of its live connection, and what it redraws: it says when it
is behind or resyncing rather than "live", announces only the connection's state
to screen readers (why, when the server keeps refusing it), counts a
reconnection down, says "loading" after a reconnection until the new
connection's view has come, redraws nothing for diffs that change nothing
drawn but what a diff changes that is drawn (a metric that comes, a
container's name), and says when a view is empty while others are not."""

from __future__ import annotations

import time
from typing import Any

import httpx

from playwright.sync_api import WebSocketRoute

from tests.synthetic import host_report

from .conftest import HeldUpdates, Ui, post_report

RECORD_STATES = """() => {
  window.states = [];
  const element = document.querySelector('#connection');
  const note = () => window.states.push([element.dataset.state, element.textContent,
                                        document.querySelector('#announcer').textContent]);
  new MutationObserver(note).observe(element, { attributes: true, childList: true, characterData: true, subtree: true });
}"""


def settled(ui: Ui) -> None:
    """Wait until nothing the page was asked to draw is still to be drawn."""
    ui.page.wait_for_function("() => trioscope.idle()")


def wait_for_server_version(ui: Ui, version: int) -> None:
    """Wait until the server's topology has reached ``version`` (reports close
    together are merged into one version)."""
    deadline = time.monotonic() + 15
    while httpx.get(f"{ui.server.base_url}/api/v1/query/stats", timeout=10).json()["topology"]["version"] < version:
        assert time.monotonic() < deadline, f"the server never reached version {version}"
        ui.page.wait_for_timeout(50)


def test_a_diff_that_changes_nothing_drawn_redraws_nothing(ui: Ui) -> None:
    for index in range(2):
        post_report(ui.server, index)
    ui.open()
    ui.wait_for_nodes({"host:host-0", "host:host-1"})
    settled(ui)
    draws, version = ui.page.evaluate("[trioscope.draws(), trioscope.version()]")
    post_report(ui.server, 0)  # the same host's same report, later: only its last_seen changes
    ui.page.wait_for_function("(v) => trioscope.version() > v", arg=version)
    settled(ui)
    assert ui.page.evaluate("trioscope.draws()") == draws
    post_report(ui.server, 0, cpu=95.0)  # critical: another colour
    ui.page.wait_for_function("(d) => trioscope.draws() > d", arg=draws)


def test_the_page_says_it_is_resyncing_not_live_until_the_whole_view_is_back(ui: Ui) -> None:
    post_report(ui.server, 0)
    held: list[str] = []
    dropped: list[bool] = []
    servers: list[WebSocketRoute] = []

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_server(message: Any) -> None:
            if dropped == [False] and '"previous_version"' in str(message):
                dropped[0] = True  # one lost diff: the next one shows the gap
                return
            ws.send(message)

        def from_page(message: Any) -> None:
            if '"resync"' in str(message):
                held.append(str(message))  # the page's request for the whole view, held back for a while
                return
            server.send(message)

        server.on_message(from_server)
        ws.on_message(from_page)
        servers.append(server)

    ui.page.route_web_socket("**/api/v1/ws*", route)
    ui.open()
    ui.wait_for_nodes({"host:host-0"})
    ui.page.wait_for_selector("#connection[data-state=live]")
    dropped.append(False)
    dropped_version = ui.page.evaluate("trioscope.version()") + 1
    post_report(ui.server, 1)  # its diff is lost
    wait_for_server_version(ui, dropped_version)
    post_report(ui.server, 2)  # this one does not follow the page's version: it asks for a resync
    ui.page.wait_for_selector("#connection[data-state=resyncing]")
    assert "resyncing" in ui.page.inner_text("#connection")
    assert ui.page.inner_text("#announcer").startswith("Connection: resyncing")
    for message in held:
        servers[-1].send(message)
    ui.wait_for_nodes({"host:host-1"})
    ui.page.wait_for_selector("#connection[data-state=live]")


def test_the_page_says_it_is_behind_while_the_server_is_ahead_of_it(ui: Ui) -> None:
    post_report(ui.server, 0)
    held = HeldUpdates.on(ui.page)
    ui.open()
    ui.wait_for_nodes({"host:host-0"})
    ui.page.wait_for_selector("#connection[data-state=live]")
    held.holding = True
    post_report(ui.server, 1)
    # Two polls of the stats later, the page has not reached the version of the first.
    ui.page.wait_for_selector("#connection[data-state=behind]", timeout=30_000)
    held.release()
    ui.wait_for_nodes({"host:host-1"})
    ui.page.wait_for_selector("#connection[data-state=live]")


def test_only_the_connection_state_is_announced_a_reconnection_counts_down_and_a_refusal_is_explained(ui: Ui) -> None:
    ui.expected += ["WebSocket connection", "ERR_CONNECTION_REFUSED", "ERR_CONTENT_LENGTH_MISMATCH"]
    ui.page.goto(ui.server.base_url + "/")
    ui.page.wait_for_selector("#signin[open]")
    assert "connecting" not in ui.page.inner_text("#connection")  # nothing connects before signing in
    post_report(ui.server, 0)
    ui.open()
    ui.wait_for_nodes({"host:host-0"})
    roles = ui.page.evaluate("[...document.querySelectorAll('[role=status], [aria-live]')].map((e) => e.id)")
    assert "counts" not in roles and "statsbar" not in roles  # per-diff figures are not announced
    ui.page.evaluate(RECORD_STATES)
    ui.server.stop()
    # Backoff doubles: some wait is of 2 s or more, and its label counts it down to the next try.
    ui.page.wait_for_function("""() => window.states.some(([state, text], i) => {
      const seconds = (t) => Number((/reconnecting in (\\d+) s/.exec(t) || [])[1]);
      const next = window.states[i + 1];
      return state === 'reconnecting' && next && next[0] === 'reconnecting' && seconds(next[1]) === seconds(text) - 1;
    })""", timeout=30_000)
    # Tries in a row that never open: the page says what that likely is, aloud too.
    ui.page.wait_for_selector("#connection[data-refused=true]", timeout=30_000)
    assert "not accepting the connection" in ui.page.inner_text("#announcer")
    announced = ui.page.evaluate("[...new Set(window.states.map((s) => s[2]))]")
    assert all(not any(ch.isdigit() for ch in text) for text in announced)  # no countdown read out
    assert "Connection: reconnecting" in announced
    # Each further try while the server stays away is no news: nothing more is read out.
    ui.page.wait_for_function("""() => { const from = window.states.findIndex((s) => s[2].includes('not accepting'));
      const after = window.states.slice(from);
      const tried = after.findIndex((s) => s[0] === 'connecting');
      return from >= 0 && tried >= 0 && after.slice(tried).some((s) => s[0] === 'reconnecting'); }""", timeout=30_000)
    said = ui.page.evaluate("""window.states.slice(window.states.findIndex((s) => s[2].includes('not accepting')))
      .map((s) => s[2])""")
    assert len(set(said)) == 1, set(said)


def test_an_empty_view_says_so_and_which_views_have_nodes(ui: Ui) -> None:
    post_report(ui.server, 0, containers=0, processes=4, connections=0)  # a host without containers
    ui.open("?view=containers")
    ui.page.wait_for_selector("#empty-view:not([hidden])")
    assert "no nodes" in ui.page.inner_text("#empty-view")
    others = ui.page.inner_text("#empty-view-others")
    assert "hosts (1)" in others and "processes (4)" in others
    assert ui.page.is_hidden("#empty")  # not the "start a probe" of a server with no reports
    ui.page.click("[data-view=hosts]")
    ui.wait_for_nodes({"host:host-0"})
    ui.page.wait_for_selector("#empty-view", state="hidden")


def test_after_a_reconnection_the_page_says_loading_until_the_new_connections_view_has_come(ui: Ui) -> None:
    post_report(ui.server, 0)
    pages: list[WebSocketRoute] = []
    servers: list[WebSocketRoute] = []
    held: list[Any] = []
    released: list[bool] = []

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        later = bool(pages)  # a connection after the first

        def from_server(message: Any) -> None:
            if later and '"reset":true' in str(message) and not released:
                held.append(message)  # the new connection's view, slow to come (as a large one is)
                return
            ws.send(message)

        server.on_message(from_server)
        pages.append(ws)
        servers.append(server)

    ui.page.route_web_socket("**/api/v1/ws*", route)
    ui.open()
    ui.wait_for_nodes({"host:host-0"})
    ui.page.wait_for_selector("#connection[data-state=live]")
    ui.page.evaluate(RECORD_STATES)
    servers[0].close()
    pages[0].close()  # the connection is lost: the page connects again
    ui.page.wait_for_function("() => window.states.some((s) => s[0] === 'connecting')")
    deadline = time.monotonic() + 15
    while not held:
        assert time.monotonic() < deadline, "the new connection's view never came"
        ui.page.wait_for_timeout(50)
    # Connected, but what it shows is still the view from before: not "live".
    ui.page.wait_for_selector("#connection[data-state=loading]")
    released.append(True)
    for message in held:
        pages[-1].send(message)
    ui.page.wait_for_selector("#connection[data-state=live]")
    states = [state for state, _, _ in ui.page.evaluate("window.states")]
    changes = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
    assert changes == ["reconnecting", "connecting", "loading", "live"]  # neither "live" nor "behind" before the view


def test_a_metric_that_comes_and_a_container_renamed_are_redrawn(ui: Ui) -> None:
    def report(name: str, *, load: bool) -> None:
        body = host_report(0, timestamp=time.time(), containers=2, processes=4, connections=0)
        body["docker_info"]["containers"][0]["name"] = f"/{name}"
        if not load:
            del body["host_info"]["load_average"]
        assert httpx.post(f"{ui.server.base_url}/api/v1/reports", json=body, timeout=10).status_code == 202

    report("db", load=False)
    ui.open("?view=hosts")
    ui.wait_for_nodes({"host:host-0"})
    settled(ui)
    assert "load1" not in ui.page.eval_on_selector_all("#size-by option", "os => os.map((o) => o.value)")
    report("db", load=True)  # only the host's metrics change, not their values shown: new choices to size by
    ui.page.wait_for_function("() => [...document.querySelectorAll('#size-by option')].some((o) => o.value === 'load1')")

    ui.page.click("[data-view=processes]")
    ui.page.uncheck("#group-by-name")  # each process on its own
    ui.page.click("[data-mode=table]")
    parents = "() => [...document.querySelectorAll('#table-body .tr')].map((r) => r.children[2].textContent)"
    ui.page.wait_for_function(f"() => ({parents})().includes('db')")
    settled(ui)
    report("db-renamed", load=True)  # the processes' container_name alone changes: their Parent column
    ui.page.wait_for_function(f"() => ({parents})().includes('db-renamed')")
    assert "db" not in ui.page.evaluate(parents)
