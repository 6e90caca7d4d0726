"""The web UI in a real headless Chromium against a real server fed by reports."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import httpx
import trio

from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent
from tests.synthetic import container_hex
from trioscope.domain.topology import container_id

from .conftest import ACME, Ui, post_report, register_agent


def containers_of(index: int, count: int = 4) -> set[str]:
    return {f"container:{container_hex(f'agent-{index}', c)}" for c in range(count)}


def test_page_is_served_with_a_strict_content_security_policy(server: ServerProcess) -> None:
    page = httpx.get(f"{server.base_url}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    module = httpx.get(f"{server.base_url}/ui/js/main.js")
    assert module.status_code == 200 and "javascript" in module.headers["content-type"]
    assert module.headers["x-content-type-options"] == "nosniff" and module.headers["cache-control"] == "no-cache"
    assert "content-security-policy" not in httpx.get(f"{server.base_url}/health").headers  # the UI's only
    assert httpx.get(f"{server.base_url}/ui/../_ui.py").status_code == 404


def test_page_loads_without_console_errors_and_shows_the_reported_hosts(ui: Ui) -> None:
    for index in range(3):
        post_report(ui.server, index)
    ui.open()
    ui.wait_for_nodes({"host:host-0", "host:host-1", "host:host-2"})
    assert ui.page.get_attribute("#connection", "data-state") == "live"
    assert ui.page.inner_text("#who") == "alice · acme · OPERATOR"
    ui.page.wait_for_function("() => document.querySelector('#stat-agents').textContent === '3'")


def test_an_empty_server_tells_a_new_user_how_to_start_a_probe(ui: Ui) -> None:
    ui.open()
    ui.page.wait_for_selector("#empty:not([hidden])")
    assert "trioscope-probe --server" in ui.page.inner_text("#empty-command")
    post_report(ui.server, 0)
    ui.wait_for_nodes({"host:host-0"})
    ui.page.wait_for_selector("#empty[hidden]", state="attached")


def test_a_new_report_appears_live_without_reload_and_without_moving_existing_nodes(ui: Ui) -> None:
    for index in range(2):
        post_report(ui.server, index)
    ui.open("?view=containers")
    before = containers_of(0) | containers_of(1)
    ui.wait_for_nodes(before)
    ui.page.evaluate("window.sameDocument = true")
    placed = ui.positions(before)

    post_report(ui.server, 2)  # a third host with four new containers
    ui.wait_for_nodes(containers_of(2))

    assert ui.page.evaluate("window.sameDocument") is True  # no reload
    assert ui.positions(before) == placed
    ui.page.wait_for_function("() => document.querySelector('#counts').dataset.shown === '12'")


def test_search_filters_and_the_filtered_view_can_be_shared_by_its_url(ui: Ui) -> None:
    for index in range(3):
        post_report(ui.server, index)
    ui.open("?view=containers&mode=table")
    ui.wait_for_nodes(containers_of(0) | containers_of(1) | containers_of(2))
    ui.page.fill("#search", "svc-1-")
    ui.page.wait_for_function("() => document.querySelector('#counts').textContent === '4 of 12 nodes'")
    names = ui.page.locator("#table-body .tr .td:first-child").all_inner_texts()
    assert sorted(names) == ["svc-1-0", "svc-1-1", "svc-1-2", "svc-1-3"]

    shared = ui.page.url
    assert parse_qs(urlparse(shared).query)["q"] == ["svc-1-"]
    ui.page.goto(shared)  # the same view in a new load, as someone given the link sees it
    ui.page.wait_for_selector("html[data-ready=true]")
    assert ui.page.input_value("#search") == "svc-1-"
    assert ui.counts() == "4 of 12 nodes"


def test_label_and_metric_filters_combine(ui: Ui) -> None:
    for index in range(2):
        post_report(ui.server, index)
    ui.open("?view=containers&mode=table")
    ui.wait_for_nodes(containers_of(0) | containers_of(1))
    ui.page.fill("#label-filter", "io.kubernetes.pod.namespace=prod")
    ui.page.press("#label-filter", "Enter")
    ui.page.wait_for_function("() => document.querySelector('#counts').textContent === '4 of 8 nodes'")
    ui.page.select_option("#metric-name", "cpu_percent")
    ui.page.fill("#metric-min", "3")
    ui.page.press("#metric-min", "Enter")
    # The even containers are pod members; their CPU is 1.5 % and 3.5 %.
    ui.page.wait_for_function("() => document.querySelector('#counts').textContent === '2 of 8 nodes'")
    assert sorted(ui.page.locator("#table-body .tr .td:first-child").all_inner_texts()) == ["svc-0-2", "svc-1-2"]
    query = parse_qs(urlparse(ui.page.url).query)
    assert query["label"] == ["io.kubernetes.pod.namespace=prod"] and query["metric"] == ["cpu_percent>=3"]


def test_clicking_a_node_shows_its_details_with_a_sparkline_and_linked_neighbours(ui: Ui) -> None:
    now = time.time()
    for step, cpu in enumerate((20.0, 35.0, 60.0)):  # three 15-second points of history
        post_report(ui.server, 0, timestamp=now - 30 + 15 * step, cpu=cpu)
    post_report(ui.server, 1, timestamp=now)
    ui.open()
    ui.wait_for_nodes({"host:host-0", "host:host-1"})
    ui.click_node("host:host-0")

    ui.page.wait_for_selector("#details[data-state=loaded][data-node='host:host-0']")
    assert ui.page.inner_text("#details-title") == "host-0"
    ui.page.wait_for_selector("[data-metric=cpu_usage] svg.sparkline polyline")
    assert int(ui.page.get_attribute("[data-metric=cpu_usage] svg.sparkline", "data-points") or 0) >= 2
    assert "60.0%" in ui.page.inner_text("[data-metric=cpu_usage] .value")
    assert "q=" not in ui.page.url and "node=host%3Ahost-0" in ui.page.url

    ui.page.click("[data-list=children] a >> nth=0")  # a container: the view follows it
    ui.page.wait_for_selector("#details[data-state=loaded][data-node^='container:']")
    assert parse_qs(urlparse(ui.page.url).query)["view"] == ["containers"]


def enrolled_probe(server: ServerProcess, auth: dict[str, str]) -> tuple[str, StatusAgent]:
    """Alice's deployment and its enrolled agent, whose signed report of host 0
    is posted: only a signed report's containers offer controls."""
    deployment = httpx.post(f"{server.base_url}/api/v1/users/alice/deployments", json={}, headers=auth).json()
    hash_ = deployment["deployment_hash"]
    enrolled = httpx.post(f"{server.base_url}/api/v1/agent/register", json={
        "deployment_hash": hash_, "enrollment_token": deployment["enrollment_token"],
        "public_key": "", "capabilities": ["docker"], "system_info": {}, "agent_version": "1"}).json()
    agent = StatusAgent(server.base_url, enrolled["agent_id"], enrolled["agent_token"], hash_)
    register_agent(server, 0, agent)
    post_report(server, 0, signer=agent)
    return hash_, agent


def enrolled_running() -> str:
    """The node id of a running container (odd containers run) of ``enrolled_probe``'s
    host 0: enrolled in alice's deployment, its ids carry tenant acme's scope."""
    return container_id(container_hex("agent-0", 1), ACME)


def stop_from_its_details(ui: Ui, running: str) -> str:
    """Open the containers view, the running container's details, and click
    Stop, confirmed: the id of the command queued, as the list shows it."""
    ui.open("?view=containers")
    ui.wait_for_nodes({running})
    ui.click_node(running)
    ui.page.click("[data-control=stop]")
    ui.page.wait_for_selector("#confirm[open]")
    assert ui.page.inner_text("#confirm-title") == "Stop svc-0-1?"
    ui.page.click("#confirm-ok")
    queued = ui.page.locator(".commands li[data-status=queued]")
    queued.wait_for()
    return queued.get_attribute("data-command") or ""


def test_a_control_button_creates_a_command_and_shows_its_progress(ui: Ui) -> None:
    server = ui.server
    auth = {"Authorization": f"Bearer {server.user_token('alice', 'acme', 'OPERATOR')}"}
    hash_, agent = enrolled_probe(server, auth)
    running = enrolled_running()

    command_id = stop_from_its_details(ui, running)
    commands = httpx.get(f"{server.base_url}/api/v1/users/alice/deployments/{hash_}/commands", headers=auth).json()
    found = {c["id"]: c for c in commands["commands"]}[command_id]
    assert found["type"] == "docker.stop"
    assert found["parameters"]["container"] == container_hex("agent-0", 1)

    async def agent_runs_it() -> None:
        async with httpx.AsyncClient() as client:
            polled = await agent.poll(client, timeout=10)
            assert polled is not None and polled.command_id == command_id
            answer = await agent.report(client, command_id, "success", result={"state": "exited"})
            assert answer.status_code == 200, answer.text

    trio.run(agent_runs_it)
    ui.page.wait_for_selector(f".commands li[data-command='{command_id}'][data-status=completed]")
    assert any("/ws/user/alice" in url for url in ui.sockets)  # progress came over the user socket

    # Logs: the probe's result is shown in the logs view once it reports.
    ui.page.click("[data-control=logs]")
    queued = ui.page.locator(".commands li[data-status=queued]")
    queued.wait_for()
    logs_id = queued.get_attribute("data-command")

    async def agent_sends_logs() -> None:
        async with httpx.AsyncClient() as client:
            polled = await agent.poll(client, timeout=10)
            assert polled is not None and polled.command_id == logs_id and polled.params["tail"] == 200
            output = {"output": "listening on :8080\nready", "truncated": False, "bytes": 25}
            assert (await agent.report(client, logs_id, "success", result=output)).status_code == 200

    trio.run(agent_sends_logs)
    ui.page.wait_for_selector("#output[open]")
    assert ui.page.inner_text("#output-title") == "Logs of svc-0-1"
    assert ui.page.inner_text("#output-text") == "listening on :8080\nready"


def test_a_failed_commands_long_error_is_shown_cut_on_one_line_of_the_list(ui: Ui) -> None:
    """An agent's error is its own text, up to 1 MiB: 300,000 characters made
    one item of the commands list 126,914 px tall."""
    server = ui.server
    auth = {"Authorization": f"Bearer {server.user_token('alice', 'acme', 'OPERATOR')}"}
    _, agent = enrolled_probe(server, auth)
    running = enrolled_running()
    command_id = stop_from_its_details(ui, running)

    async def agent_fails_it() -> None:
        async with httpx.AsyncClient() as client:
            polled = await agent.poll(client, timeout=10)
            assert polled is not None and polled.command_id == command_id
            answer = await agent.report(client, command_id, "failed", error="no such container " * 16_000)
            assert answer.status_code == 200, answer.text

    trio.run(agent_fails_it)
    failed = ui.page.locator(f".commands li[data-command='{command_id}'][data-status=failed]")
    failed.wait_for()
    text = failed.inner_text()
    assert "failed: no such container" in text and len(text) < 400, len(text)
    box = failed.bounding_box()
    assert box is not None and box["height"] < 200, box


def test_a_viewer_sees_no_control_buttons(ui: Ui) -> None:
    post_report(ui.server, 0)
    ui.open("?view=containers", role="VIEWER", user="vera")
    running = f"container:{container_hex('agent-0', 1)}"
    ui.wait_for_nodes({running})
    ui.click_node(running)
    ui.page.wait_for_selector(f"#details[data-state=loaded][data-node='{running}']")
    assert ui.page.locator("[data-control]").count() == 0
    assert ui.page.locator(".controls-section").count() == 0


def test_only_the_deployments_owner_sees_its_containers_controls(ui: Ui) -> None:
    enrolled_probe(ui.server, {"Authorization": f"Bearer {ui.server.user_token('alice', 'acme', 'OPERATOR')}"})
    post_report(ui.server, 1)  # unsigned: its containers have no enrolled agent to control them
    alices, unsigned = enrolled_running(), container_id(container_hex("agent-1", 1))
    ui.open("?view=containers", user="bob")  # an operator of alice's tenant, not the deployment's owner
    ui.wait_for_nodes({alices, unsigned})
    ui.click_node(alices)
    ui.page.wait_for_selector(f"#details[data-state=loaded][data-node='{alices}']")
    assert ui.page.locator("[data-control]").count() == 0
    assert ui.page.locator(".controls-section").count() == 0  # no Follow either
    ui.click_node(unsigned)
    ui.page.wait_for_selector(f"#details[data-state=loaded][data-node='{unsigned}']")
    assert "no probe enrolled in a deployment reported" in ui.page.inner_text(".controls-section")
    assert ui.page.locator("[data-control]").count() == 0


def test_a_bad_token_is_refused_and_a_401_later_brings_the_sign_in_back(ui: Ui) -> None:
    ui.expected.append("status of 401")
    enrolled_probe(ui.server, {"Authorization": f"Bearer {ui.server.user_token('alice', 'acme', 'OPERATOR')}"})
    ui.page.goto(ui.server.base_url + "/")
    ui.page.fill("#signin-token", "not-a-token")
    ui.page.click("#signin-submit")
    ui.page.wait_for_function("() => document.querySelector('#signin-error').textContent.includes('not valid')")
    ui.page.fill("#signin-token", ui.server.user_token())
    ui.page.click("#signin-submit")
    ui.page.wait_for_selector("html[data-ready=true]")
    assert not ui.page.locator("#signin").get_attribute("open")

    # The token stops working (the secret was rotated, say): the next call says 401
    # (here a control's; the details panel has listed the node's metrics series already).
    ui.page.click("[data-view=containers]")
    running = enrolled_running()
    ui.wait_for_nodes({running})
    ui.click_node(running)
    ui.page.wait_for_selector("#details .series:not([data-state=idle]):not([data-state=loading])")
    ui.page.evaluate("sessionStorage.setItem('trioscope.token', 'revoked')")
    ui.page.click("[data-control=stop]")
    ui.page.click("#confirm-ok")
    ui.page.wait_for_selector("#signin[open]")
    assert "Sign in again" in ui.page.inner_text("#signin-error")


def test_a_token_pasted_wrapped_or_cut_is_taken_whole_or_refused_for_what_it_is(ui: Ui) -> None:
    """A token wrapped over two lines, or with a zero-width space, was sent as
    it was: the browser refused the header, and the page said the server could
    not be reached (and kept the token for the next load)."""
    ui.page.goto(ui.server.base_url + "/")
    token = ui.server.user_token()
    for cut in ("token\u2026", "x" * 200_000):
        ui.page.fill("#signin-token", token[:40] + cut)
        ui.page.click("#signin-submit")
        ui.page.wait_for_function("() => /not a token|cannot have|cannot check/.test(document.querySelector('#signin-error').textContent)")
        error = ui.page.inner_text("#signin-error")
        assert "not a token" in error or "cannot have" in error, error
        assert ui.page.evaluate("sessionStorage.getItem('trioscope.token')") is None
    ui.page.fill("#signin-token", f"{token[:60]}\n{token[60:120]}\u200b{token[120:]}\n")
    ui.page.click("#signin-submit")
    ui.page.wait_for_selector("html[data-ready=true]")
    assert not ui.page.locator("#signin").get_attribute("open")


def test_the_page_shows_a_lost_connection_and_catches_up_after_a_server_restart(ui: Ui) -> None:
    ui.expected += ["WebSocket connection", "ERR_CONNECTION_REFUSED"]  # the browser logs the failed tries
    # The server is stopped under the page: once in ~10 CI runs the page's stats poll, in flight at that moment,
    # was logged as cut short (not reproduced outside the browser; see the session notes). What this test
    # asserts is the page's recovery, not the stop.
    ui.expected.append("ERR_CONTENT_LENGTH_MISMATCH")
    post_report(ui.server, 0)
    ui.open()
    ui.wait_for_nodes({"host:host-0"})
    port = urlparse(ui.server.base_url).port
    ui.server.stop()
    ui.page.wait_for_selector("#connection[data-state=reconnecting]")
    # A few tries in a row that never opened: the page says why it may be (a browser is not told a 429 or 503).
    ui.page.wait_for_selector("#connection[data-refused=true]")
    assert "not accepting the connection" in ui.page.inner_text("#connection")

    with ServerProcess(["--port", str(port)]) as again:  # a new, empty server where the old one was
        post_report(again, 1)
        ui.page.wait_for_selector("#connection[data-state=live]")
        assert ui.page.get_attribute("#connection", "data-refused") == "false"
        ui.wait_for_nodes({"host:host-1"})
        ui.wait_for_nodes({"host:host-0"}, present=False)  # the view was reset, not merged into the old one


def test_a_long_table_scrolls_and_sorts_every_row_while_only_a_screenful_exists(ui: Ui) -> None:
    for index in range(30):  # 300 containers
        post_report(ui.server, index, containers=10, processes=2, connections=0, container_load=float(index))
    ui.open("?view=containers&mode=table")
    ui.page.wait_for_function("() => document.querySelector('#counts').textContent === '300 nodes'")
    rows = ui.page.locator("#table-body .tr")
    assert rows.count() < 80  # virtual: a screenful and some spare, not 300

    ui.page.click(".th[data-key=cpu_percent]")
    ui.page.click(".th[data-key=cpu_percent]")  # descending
    # Drawn at the next frame the page draws (draws are paced), not at the click.
    ui.page.wait_for_selector(".th[data-key=cpu_percent][aria-sort=descending]")
    ui.page.wait_for_function("() => document.querySelector('#table-body .tr .td').textContent === 'svc-29-9'")
    assert rows.first.locator(".td").first.inner_text() == "svc-29-9"  # 1.5 + 9 + 29: the busiest
    ui.page.eval_on_selector("#table-scroll", "(el) => { el.scrollTop = el.scrollHeight; }")
    ui.page.wait_for_function("() => [...document.querySelectorAll('#table-body .tr .td:first-child')]"
                              ".some((cell) => cell.textContent === 'svc-0-0')")
    last = ui.page.evaluate("""() => {
      const scroll = document.querySelector('#table-scroll').getBoundingClientRect();
      const cells = [...document.querySelectorAll('#table-body .tr .td:first-child')];
      const seen = cells.filter((c) => { const r = c.getBoundingClientRect(); return r.bottom <= scroll.bottom + 1; });
      return seen[seen.length - 1].textContent;
    }""")
    assert last == "svc-0-0"  # the idlest, fully in sight at the bottom
    assert "sort=cpu_percent" in ui.page.url and "dir=desc" in ui.page.url
    ui.page.focus("#table-body .tr >> nth=0")  # the keyboard selects a row too
    ui.page.keyboard.press("Enter")
    ui.page.wait_for_selector("#details[data-state=loaded]")


def test_switching_views_quickly_shows_only_the_last_views_nodes(ui: Ui) -> None:
    post_report(ui.server, 0)
    ui.open()
    ui.wait_for_nodes({"host:host-0"})
    for view in ("containers", "processes", "pods", "hosts", "containers"):
        ui.page.click(f"[data-view={view}]")
    ui.wait_for_nodes(containers_of(0))
    assert all(i.startswith("container:") for i in ui.node_ids())
    assert ui.counts() == "4 nodes"


def test_the_type_filter_of_the_all_view(ui: Ui) -> None:
    post_report(ui.server, 0)
    ui.open("?view=all&mode=table")
    ui.wait_for_nodes({"host:host-0"} | containers_of(0))
    ui.page.select_option("#type-filter", "container")
    ui.page.wait_for_function("() => document.querySelector('#counts').textContent.startsWith('4 of ')")
    ui.page.click("[data-view=hosts]")  # the filter is of the All view only: hosts still show
    ui.page.wait_for_function("() => document.querySelector('#counts').textContent === '1 node'")
    assert ui.page.is_hidden("#type-filter")


def test_signing_out_stops_the_live_view_and_asks_for_a_token(ui: Ui) -> None:
    post_report(ui.server, 0)
    ui.open()
    ui.wait_for_nodes({"host:host-0"})
    ui.click_node("host:host-0")
    ui.page.wait_for_selector("#details[data-state=loaded]")
    ui.page.wait_for_function("() => document.querySelector('#stat-nodes').textContent !== '–'")
    ui.page.click("#sign-out")
    ui.page.wait_for_selector("#signin[open]")
    assert ui.page.get_attribute("#connection", "data-state") == "closed"
    assert ui.page.is_hidden("#details") and ui.node_ids() == set()
    assert ui.page.evaluate("() => sessionStorage.getItem('trioscope.token')") is None
    stats = ["stat-agents", "stat-nodes", "stat-clients", "stat-updated", "stat-version"]
    assert [ui.page.inner_text(f"#{stat}") for stat in stats] == ["–"] * 5  # none of the last session's figures
    assert parse_qs(urlparse(ui.page.url).query)["node"] == ["host:host-0"]  # what was looked at stays
    ui.page.fill("#signin-token", ui.server.user_token())
    ui.page.click("#signin-submit")
    ui.wait_for_nodes({"host:host-0"})
    ui.page.wait_for_selector("#details[data-state=loaded][data-node='host:host-0']")  # shown again


def test_nodes_are_sized_by_the_chosen_metric(ui: Ui) -> None:
    post_report(ui.server, 0)
    ui.open("?view=containers")
    idle, busy = (f"container:{container_hex('agent-0', c)}" for c in (0, 3))  # CPU 1.5 % and 4.5 %
    ui.wait_for_nodes({idle, busy})
    radius = "(id) => trioscope.radius(id)"
    assert ui.page.evaluate(radius, idle) == ui.page.evaluate(radius, busy)
    ui.page.select_option("#size-by", "cpu_percent")
    ui.page.wait_for_function("([a, b]) => trioscope.radius(b) > trioscope.radius(a) + 3", arg=[idle, busy])
    assert "size=cpu_percent" in ui.page.url


def test_processes_are_shown_with_their_containers_names(ui: Ui) -> None:
    post_report(ui.server, 0, containers=2, processes=4, connections=0)
    ui.open("?view=processes&group=0&mode=table")  # each process on its own, in its container
    ui.page.wait_for_function("() => document.querySelector('#counts').textContent === '4 nodes'")
    parents = ui.page.evaluate("() => [...document.querySelectorAll('#table-body .tr')]"
                               ".map((row) => row.querySelectorAll('.td')[2].textContent)")
    assert sorted(parents) == ["svc-0-0", "svc-0-0", "svc-0-1", "svc-0-1"]  # not "container 1a2b…"
