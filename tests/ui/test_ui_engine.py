"""The whole path from a browser click to a real container: the page, the
server, the probe enrolled as the deployment's agent, and a Podman engine
(tests/tools/docker-engine.sh)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import trio

from tests.integration.test_probe import probe
from tests.integration.test_live_logs import chatty_container  # noqa: F401 (a fixture)
from tests.integration.test_probe_containers import container  # noqa: F401 (a fixture)
from tests.waiting import eventually
from trioscope.domain.topology import container_id

from .conftest import ACME, Ui

SLOW_MS = 60_000  # the engine stops a container in up to its 10 s grace period


def test_stopping_a_real_container_from_the_browser(ui: Ui, docker_host: str, container: Any,  # noqa: F811
                                                     tmp_path: Path) -> None:
    server = ui.server
    auth = {"Authorization": f"Bearer {server.user_token('ops', 'acme', 'OPERATOR')}"}
    deployment = httpx.post(f"{server.base_url}/api/v1/users/ops/deployments", json={}, headers=auth).json()
    with probe(server.base_url, "probe-ui", "--docker-host", docker_host,
               "--deployment-hash", deployment["deployment_hash"],
               "--enrollment-token", deployment["enrollment_token"], "--state-dir", str(tmp_path)):
        ui.open(f"?view=containers&q={container.name}", user="ops")
        node_id = container_id(container.id, ACME)  # the probe is enrolled in a deployment of ops's, tenant acme
        ui.wait_for_nodes({node_id})
        ui.page.wait_for_function("() => document.querySelector('#counts').dataset.shown === '1'")
        ui.click_node(node_id)
        ui.page.click("[data-control=stop]")
        ui.page.click("#confirm-ok")

        ui.page.wait_for_selector(".commands li[data-status=completed]", timeout=SLOW_MS)
        container.reload()
        assert container.status == "exited"
        # The next report shows it stopped; the open details follow without a click.
        ui.page.wait_for_function("() => document.querySelector('#details .badge.status')?.textContent === 'exited'",
                                  timeout=SLOW_MS)
        assert ui.page.locator("[data-control=start]").count() == 1


def test_following_a_real_containers_log_in_its_details(ui: Ui, docker_host: str,
                                                        chatty_container: Any, tmp_path: Path) -> None:  # noqa: F811
    server = ui.server
    auth = {"Authorization": f"Bearer {server.user_token('ops', 'acme', 'OPERATOR')}"}
    deployment = httpx.post(f"{server.base_url}/api/v1/users/ops/deployments", json={}, headers=auth).json()
    commands_url = f"{server.base_url}/api/v1/users/ops/deployments/{deployment['deployment_hash']}/commands"

    def wait_for_cancelled(count: int) -> None:
        async def cancelled() -> bool:
            async with httpx.AsyncClient(timeout=10) as client:
                listed = (await client.get(commands_url, params={"status": "cancelled"}, headers=auth)).json()
            return len(listed["commands"]) >= count

        trio.run(eventually, cancelled, SLOW_MS / 1000)

    with probe(server.base_url, "probe-ui", "--docker-host", docker_host,
               "--deployment-hash", deployment["deployment_hash"],
               "--enrollment-token", deployment["enrollment_token"], "--state-dir", str(tmp_path)):
        ui.open(f"?view=containers&q={chatty_container.name}", user="ops")
        node_id = container_id(chatty_container.id, ACME)  # enrolled: its tenant's scope
        ui.wait_for_nodes({node_id})
        ui.page.wait_for_function("() => document.querySelector('#counts').dataset.shown === '1'")
        ui.click_node(node_id)

        ui.page.check("[data-follow]")
        ui.page.wait_for_selector("[data-live-log] [data-source=stdout]", timeout=SLOW_MS)
        ui.page.wait_for_selector("[data-live-log] [data-source=stderr]", timeout=SLOW_MS)
        ui.page.wait_for_function("() => document.querySelectorAll('[data-live-log] .log-line').length >= 8",
                                  timeout=SLOW_MS)  # lines keep arriving
        assert "out " in ui.page.inner_text("[data-live-log]")
        assert ui.page.get_attribute("[data-follow-state]", "data-follow-state") == "following"

        ui.page.uncheck("[data-follow]")
        assert ui.page.get_attribute("[data-follow-state]", "data-follow-state") == "stopped"
        wait_for_cancelled(1)

        # Closing the details stops a follow too.
        ui.page.check("[data-follow]")
        ui.page.wait_for_function("() => document.querySelector('[data-follow-state]').dataset.followState"
                                  " === 'following'", timeout=SLOW_MS)
        ui.page.click("#details-close")
        wait_for_cancelled(2)

        # And signing out: its cancel went out after the token was gone (401), the follow ran on.
        ui.click_node(node_id)
        ui.page.check("[data-follow]")
        ui.page.wait_for_function("() => document.querySelector('[data-follow-state]').dataset.followState"
                                  " === 'following'", timeout=SLOW_MS)
        ui.page.click("#sign-out")
        wait_for_cancelled(3)
