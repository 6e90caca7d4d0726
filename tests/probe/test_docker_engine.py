"""The probe's container collector against a real Docker-API engine (Podman,
started by tests/tools/docker-engine.sh): changes that leave the engine's status
text as it was show in the next collection, and a container being stopped
still shows running.

Skipped only if the engine cannot start here (tests/engine.py; the reason is shown)."""

from __future__ import annotations

from functools import partial
from typing import Any

import docker
import docker.errors
import trio

from tests.probe.engine import IMAGE, unique
from tests.waiting import eventually
from trioscope_probe._docker import ContainerCollector
from trioscope_probe._executor import execute


def _mine(collector: ContainerCollector, container_id: str) -> Any:
    info = collector.collect()
    assert info is not None
    return next((c for c in info.containers if c.id == container_id), None)


def test_a_rename_and_a_network_connect_show_in_the_next_collection(docker_host: str,
                                                                    engine: docker.DockerClient) -> None:
    # A created container: its status text ("Created") stays the same throughout,
    # as a running one's "Up 3 days" does for a day.
    container = engine.containers.create(IMAGE, ["sleep", "600"], name=unique("probe-rename"))
    network = engine.networks.create(unique("probe-net"))
    try:
        collector = ContainerCollector(docker_host)
        before = _mine(collector, container.id)
        assert before.name == container.name and network.name not in {n.name for n in before.networks}

        container.rename(f"{container.name}-renamed")
        network.connect(container)
        after = _mine(collector, container.id)
        assert (after.status, after.name) == (before.status, f"{container.name}-renamed")
        assert network.name in {n.name for n in after.networks}
    finally:
        container.remove(force=True)
        network.remove()


async def test_a_container_being_stopped_shows_running_until_it_stops(docker_host: str,
                                                                        engine: docker.DockerClient) -> None:
    # sleep as the container's first process ignores SIGTERM: the stop waits out its
    # grace period, and Podman says "stopping" meanwhile.
    container = engine.containers.run(IMAGE, ["sleep", "600"], detach=True, name=unique("probe-stopping"))
    collector = ContainerCollector(docker_host)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(trio.to_thread.run_sync, partial(container.stop, timeout=60)))
            try:

                async def stopping() -> Any:
                    found = await trio.to_thread.run_sync(_mine, collector, container.id)
                    return found if found is not None and found.status == "Stopping" else None

                # (Podman answers no statistics meanwhile: an empty body.)
                assert (await eventually(stopping)).state == "running"
            finally:
                await trio.to_thread.run_sync(container.kill)  # ends the stop's wait
        assert _mine(collector, container.id).state == "exited"
    finally:
        container.remove(force=True)


def test_a_paused_container_is_stopped(engine: docker.DockerClient) -> None:
    """The server offers a stop for a paused container, as Docker takes one;
    Podman refused it ("container state improper"), every time."""
    container = engine.containers.run(IMAGE, ["sleep", "600"], detach=True, name=unique("probe-paused"))
    try:
        container.pause()
        stopped = execute(engine, "docker.stop", {"container": container.id, "timeout": 1})
        assert stopped["state"] == "exited", stopped
    finally:
        container.remove(force=True)
