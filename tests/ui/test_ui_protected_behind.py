"""Where reads are protected the page says ``behind`` too: it compares the
version its live view reached with ``stats.topology.version``, which a tenant
reader's stats did not have (an ADMIN's had it under ``server``): the state
stayed ``live`` however far behind the page was (a reviewer)."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import WebSocketRoute

from .conftest import Ui, post_report
from .test_ui_protected import _enrolled_agent
from .test_ui_protected import server as server  # the fixture: a server that protects reads


def test_a_tenant_readers_page_says_it_is_behind_while_the_server_is_ahead_of_it(ui: Ui) -> None:
    ours, theirs = _enrolled_agent(ui.server), _enrolled_agent(ui.server, "other")
    post_report(ui.server, 0, signer=ours)
    frames: list[Any] = []
    holding: list[bool] = []
    pages: list[WebSocketRoute] = []

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_server(message: Any) -> None:
            if holding and '"topology_update"' in str(message):
                frames.append(message)  # the page does not read them: as a page too busy to
                return
            ws.send(message)

        server.on_message(from_server)
        pages.append(ws)

    ui.page.route_web_socket("**/api/v1/ws*", route)
    ui.open(role="VIEWER")
    ui.wait_for_nodes({"host:host-0"})
    ui.page.wait_for_selector("#connection[data-state=live]")
    holding.append(True)
    post_report(ui.server, 2, signer=theirs)  # another tenant's: a version this page is sent, holding nothing
    # Two polls of the stats later, the page has not reached the version of the first.
    ui.page.wait_for_selector("#connection[data-state=behind]", timeout=30_000)
    holding.clear()
    for frame in frames:
        pages[-1].send(frame)
    ui.page.wait_for_selector("#connection[data-state=live]")
    assert "host:host-2" not in ui.node_ids()  # the other tenant's: never shown
