"""A host whose container engine does not answer its probe: the page says so
on the host (its row, its node in the graph, its details) and shows its
containers as the server keeps them, last known: "unknown (last: running)",
muted, why in their details, and no controls. Before, the host looked as any
other, and its containers read "unknown" with "No controls in this state."."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from tests.synthetic import container_hex
from trioscope.domain.topology import container_id, host_id

from .conftest import ACME, Ui, post_report
from .test_ui import enrolled_probe
from .test_ui_access import contrast

PROBLEM = "cannot connect to socket /run/docker.sock"
HOST = host_id("host-0", ACME)
RUNNING = container_id(container_hex("agent-0", 1), ACME)  # odd containers run
PAUSED = container_id(container_hex("agent-0", 0), ACME)  # container 0 is paused (synthetic: c % 7 == 0)


def row_status(ui: Ui, node_id: str, text: str) -> None:
    """Wait until the table's row of ``node_id`` says ``text`` in its Status column."""
    ui.page.wait_for_function(
        "([id, text]) => document.querySelector(`#table-body .tr[data-id='${id}'] .td.status`)?.textContent === text",
        arg=[node_id, text])


def details_status(ui: Ui, node_id: str, text: str) -> None:
    """Wait until the details show ``node_id`` with the status badge ``text``."""
    ui.page.wait_for_function(
        "([id, text]) => document.querySelector('#details').dataset.node === id"
        " && document.querySelector('#details[data-state=loaded] .badge.status')?.textContent === text",
        arg=[node_id, text])


def hover_tooltip(ui: Ui, node_id: str) -> str:
    """The graph's tooltip over ``node_id`` (the pointer brought onto it from afar)."""
    ui.page.mouse.move(1, 1)
    x, y = ui.positions({node_id})[node_id]
    ui.page.mouse.move(x, y)
    ui.page.wait_for_function("() => document.querySelector('#canvas').title !== ''")
    return ui.page.get_attribute("#canvas", "title") or ""


def test_a_hosts_engine_outage_shows_on_the_host_and_its_containers_as_last_known(ui: Ui) -> None:
    server = ui.server
    auth = {"Authorization": f"Bearer {server.user_token('alice', 'acme', 'OPERATOR')}"}
    _, agent = enrolled_probe(server, auth)  # signed: its containers offer controls
    post_report(server, 0, signer=agent, engine={"reachable": True})
    ui.open("?mode=table")
    ui.wait_for_nodes({HOST})
    row_status(ui, HOST, "up")

    post_report(server, 0, signer=agent, engine={"containers": [], "reachable": False, "problem": PROBLEM})
    # The host's row: in words, and the warning's shape (a word for screen readers).
    row_status(ui, HOST, "up, container engine unreachable")
    assert "warning" in (ui.page.get_attribute(f"#table-body .tr[data-id='{HOST}'] .td.status", "class") or "")
    # Why, over the cell: the listing has it, no details asked for.
    assert ui.page.get_attribute(f"#table-body .tr[data-id='{HOST}'] .td.status", "title") == \
        f"up, container engine unreachable: {PROBLEM}"
    ui.page.click(f"#table-body .tr[data-id='{HOST}']")
    ui.page.wait_for_selector(f"#details[data-state=loaded][data-node='{HOST}'] [data-engine=unreachable]")
    assert ui.page.inner_text("[data-engine=unreachable]") == f"Container engine: unreachable — {PROBLEM}"
    # The graph: its node's tooltip (and "engine unreachable" drawn under its name).
    ui.page.click("#mode-graph")
    ui.wait_for_nodes({HOST})
    assert hover_tooltip(ui, HOST) == f"host-0 (up, container engine unreachable: {PROBLEM})"

    # Its containers, kept as last known: their last state, muted, why, no controls.
    ui.page.click("[data-view=containers]")
    ui.page.click("#mode-table")
    ui.wait_for_nodes({RUNNING, PAUSED})
    row_status(ui, RUNNING, "unknown (last: running)")
    row_status(ui, PAUSED, "unknown (last: paused)")
    assert "stale" in (ui.page.get_attribute(f"#table-body .tr[data-id='{RUNNING}']", "class") or "").split()
    ui.page.click(f"#table-body .tr[data-id='{RUNNING}']")
    details_status(ui, RUNNING, "unknown (last: running)")
    # Muted, but legible as text (4.5:1) on the selected row's blue too, where --muted is not.
    ink, ground = ui.page.evaluate("id => { const s = getComputedStyle(document.querySelector("
                                   "`#table-body .tr[data-id='${id}']`)); return [s.color, s.backgroundColor]; }",
                                   RUNNING)
    assert contrast(ink, ground) >= 4.5, (ink, ground)
    reason = ui.page.inner_text("#details [data-stale]")
    assert "Last known state: running" in reason and "container engine does not answer; shown as last known" in reason
    ui.page.wait_for_selector("#details [data-no-controls=stale]")
    assert "container engine does not answer" in ui.page.inner_text("#details .controls-section")
    assert ui.page.locator("#details [data-control]").count() == 0
    ui.page.click("#mode-graph")
    ui.wait_for_nodes({RUNNING})
    assert hover_tooltip(ui, RUNNING) == "svc-0-1 (unknown (last: running))"
    ui.page.click("#mode-table")
    ui.wait_for_nodes({RUNNING})
    # As the server has it: no control would reach it.
    stop = f"{server.base_url}/api/v1/query/nodes/{quote(RUNNING, safe='')}/controls/stop"
    refused = httpx.post(stop, json={"parameters": {}}, headers=auth)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "control_not_available", refused.text

    # The engine answers again: as it lists them, and the host as any other.
    post_report(server, 0, signer=agent, engine={"reachable": True})
    details_status(ui, RUNNING, "running")
    row_status(ui, RUNNING, "running")
    row_status(ui, PAUSED, "paused")
    assert "stale" not in (ui.page.get_attribute(f"#table-body .tr[data-id='{RUNNING}']", "class") or "").split()
    assert ui.page.locator("#details [data-stale]").count() == 0
    ui.page.wait_for_selector("#details [data-control=stop]:enabled")
    assert ui.page.locator("#details [data-no-controls]").count() == 0
    ui.page.click("[data-view=hosts]")
    ui.wait_for_nodes({HOST})
    row_status(ui, HOST, "up")
    assert "warning" not in (ui.page.get_attribute(f"#table-body .tr[data-id='{HOST}'] .td.status", "class") or "")
    ui.page.click(f"#table-body .tr[data-id='{HOST}']")
    details_status(ui, HOST, "up")
    assert ui.page.locator("#details [data-engine]").count() == 0
