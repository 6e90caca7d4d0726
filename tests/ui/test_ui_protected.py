"""The web UI against a server that protects reads (``--protect-reads``): the
page signs in once and everything it reads, the live stream included, carries
the token."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent
from trioscope.domain.topology import host_id, node_scope

from .conftest import Ui, post_report


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    # The test's probe reports unsigned, as the local probe does: shown to every signed-in user.
    with ServerProcess(["--protect-reads", "true"]) as process:
        yield process


def _enrolled_agent(server: ServerProcess, tenant: str = "acme") -> StatusAgent:
    """An agent of a deployment of ``tenant``: the probes it signs for are that tenant's to see."""
    auth = {"Authorization": f"Bearer {server.user_token('olga', tenant, 'OPERATOR')}"}
    deployment = httpx.post(f"{server.base_url}/api/v1/users/olga/deployments", json={}, headers=auth).json()
    enrolled = httpx.post(f"{server.base_url}/api/v1/agent/register", json={
        "deployment_hash": deployment["deployment_hash"], "enrollment_token": deployment["enrollment_token"]}).json()
    return StatusAgent(server.base_url, enrolled["agent_id"], enrolled["agent_token"], deployment["deployment_hash"])


def _host(index: int, tenant: str = "acme") -> str:
    """The node id of host ``host-<index>`` as a probe of ``_enrolled_agent(server, tenant)`` reports it."""
    return host_id(f"host-{index}", node_scope(tenant))


def test_a_signed_in_viewer_sees_live_updates_where_reads_are_protected(ui: Ui) -> None:
    # One enrolled agent per probe (a deployment has one agent): two of acme's, one of another tenant's.
    ours, also_ours, theirs = _enrolled_agent(ui.server), _enrolled_agent(ui.server), _enrolled_agent(ui.server, "other")
    post_report(ui.server, 0, signer=ours)
    post_report(ui.server, 2, signer=theirs)  # another tenant's probe: never shown
    ui.open(role="VIEWER")
    ui.wait_for_nodes({_host(0)})
    assert ui.page.get_attribute("#connection", "data-state") == "live"
    post_report(ui.server, 1, signer=also_ours)  # arrives over the live stream, which needed the token too
    ui.wait_for_nodes({_host(1)})
    assert _host(2, "other") not in ui.node_ids()
    # The stats count what the viewer sees: acme's two probes, not the other tenant's.
    ui.page.wait_for_function("() => document.querySelector('#stat-agents').textContent === '2'")
    ui.click_node(_host(0))
    ui.page.wait_for_selector("#details[data-state=loaded]")


def test_a_viewer_of_a_tenant_without_probes_sees_no_other_tenants_figures_and_how_to_start_one(ui: Ui) -> None:
    post_report(ui.server, 0, signer=_enrolled_agent(ui.server))  # acme's
    ui.open(role="VIEWER", user="vera", tenant="newco")
    ui.page.wait_for_selector("#empty:not([hidden])")  # "No reports yet": what this user sees is empty
    ui.page.wait_for_function("() => document.querySelector('#stat-nodes').textContent === '0'")
    assert ui.page.inner_text("#stat-agents") == "0"
    assert ui.counts() == "0 nodes"
