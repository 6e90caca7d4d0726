"""The whole path from a browser click to a real container: the page, the
server, the probe enrolled as the deployment's agent, and a Podman engine
(tests/tools/docker-engine.sh)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.integration.test_probe import probe
from tests.integration.test_probe_containers import container  # noqa: F401 (a fixture)

from .conftest import Ui

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
        node_id = f"container:{container.id}"
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
