"""Where reads are protected the page says ``behind`` too: it compares the
version its live view reached with ``stats.topology.version``, which a tenant
reader's stats did not have (an ADMIN's had it under ``server``): the state
stayed ``live`` however far behind the page was (a reviewer)."""

from __future__ import annotations

from .conftest import HeldUpdates, Ui, post_report
from .test_ui_protected import _enrolled_agent, _host
from .test_ui_protected import server as server  # the fixture: a server that protects reads


def test_a_tenant_readers_page_says_it_is_behind_while_the_server_is_ahead_of_it(ui: Ui) -> None:
    ours, theirs = _enrolled_agent(ui.server), _enrolled_agent(ui.server, "other")
    post_report(ui.server, 0, signer=ours)
    held = HeldUpdates.on(ui.page)
    ui.open(role="VIEWER")
    ui.wait_for_nodes({_host(0)})
    ui.page.wait_for_selector("#connection[data-state=live]")
    held.holding = True
    post_report(ui.server, 2, signer=theirs)  # another tenant's: a version this page is sent, holding nothing
    # Two polls of the stats later, the page has not reached the version of the first.
    ui.page.wait_for_selector("#connection[data-state=behind]", timeout=30_000)
    held.release()
    ui.page.wait_for_selector("#connection[data-state=live]")
    assert _host(2, "other") not in ui.node_ids()  # the other tenant's: never shown
