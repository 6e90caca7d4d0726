"""The web UI against a server that protects reads (``--protect-reads``): the
page signs in once and everything it reads, the live stream included, carries
the token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server_process import ServerProcess

from .conftest import Ui, post_report


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    # The test's probe reports unsigned, as the local probe does: shown to every signed-in user.
    with ServerProcess(["--protect-reads", "true", "--show-unassigned-agents", "true"]) as process:
        yield process


def test_a_signed_in_viewer_sees_live_updates_where_reads_are_protected(ui: Ui) -> None:
    post_report(ui.server, 0)
    ui.open(role="VIEWER")
    ui.wait_for_nodes({"host:host-0"})
    assert ui.page.get_attribute("#connection", "data-state") == "live"
    post_report(ui.server, 1)  # arrives over the live stream, which needed the token too
    ui.wait_for_nodes({"host:host-1"})
    ui.page.wait_for_function("() => document.querySelector('#stat-agents').textContent === '2'")
    ui.click_node("host:host-0")
    ui.page.wait_for_selector("#details[data-state=loaded]")
