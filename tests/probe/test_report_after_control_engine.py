"""End to end, against a real engine (Podman, ``docker_host``): a container
stopped and started through the probe shows its new state in the topology at
once, though the probe's interval is an hour. It kept the old state until the
next regular report (13-25 s with the default 15 s interval).

Skipped only if the engine cannot start here (tests/engine.py says why)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest

from tests.integration.test_probe_containers import probe_as_agent
from tests.probe.engine import IMAGE, unique
from tests.waiting import eventually
from trioscope.domain.topology import container_id, node_scope


@pytest.fixture
def container(engine: docker.DockerClient) -> Iterator[Any]:
    started = engine.containers.run(IMAGE, ["sleep", "600"], detach=True, name=unique("probe-asked"))
    try:
        yield started
    finally:
        try:
            started.remove(force=True)
        except docker.errors.NotFound:
            pass


async def test_a_stop_and_a_start_show_without_waiting_for_the_interval(docker_host: str, container: Any,
                                                                        tmp_path: Path) -> None:
    async with probe_as_agent(docker_host, tmp_path, "--interval", "1h", "--no-connections",
                              "--allow", "docker.stop,docker.start") as (server, client, operator, hash_):
        node_id = container_id(container.id, node_scope(operator.tenant))  # enrolled: its tenant's scope
        node_url = f"{server.base_url}/api/v1/query/nodes/{node_id}"

        async def state() -> str | None:
            response = await client.get(node_url)
            if response.status_code != 200:
                return None
            body = response.json()
            return str(body.get("node", body)["metadata"]["state"])

        async def shows(wanted: str) -> bool:
            return await state() == wanted

        await eventually(lambda: shows("running"))  # the first report
        for kind, after in (("docker.stop", "exited"), ("docker.start", "running")):
            created = await operator.command(client, hash_, type=kind, timeout_seconds=60,
                                             parameters={"container": container.id, "timeout": 1}
                                             if kind == "docker.stop" else {"container": container.id})

            async def finished() -> dict[str, Any] | None:
                command = await operator.get(client, hash_, created["command_id"])
                return command if command["status"] in ("completed", "failed") else None

            assert (await eventually(finished, deadline=60))["status"] == "completed"
            await eventually(lambda: shows(after))  # the next regular report is an hour away
