"""A restarted topology goes on telling the hub its versions: the hub
subscribed once, and is told nothing of the restart (a live view froze for
every browser connected, with no reset and no error, until the hub itself
restarted). Its clients start again from the rebuilt graph, at a version
after every one they had."""

from __future__ import annotations

from typing import Any

import orjson
import trio

from tests.actors.test_topology_actor import Poison, deliver, hosts_in, small_report
from trioscope.actors.client import LiveCounters, client_spec
from trioscope.actors.client_link import ClientLink
from trioscope.domain.topology import View, host_id
from trioscope.runtime import open_actor_system
from trioscope.system import CLIENTS, HUB, TOPOLOGY, supervision_tree


async def _until_seen(link: ClientLink, node_id: str, versions: list[int]) -> None:
    """Read the client's frames until one names ``node_id``, keeping each
    topology frame's version."""
    async for frame in link.frames:
        update: dict[str, Any] = orjson.loads(str(frame))
        if update["type"] != "topology_update":
            continue
        versions.append(update["payload"]["version"])
        payload = update["payload"]
        if node_id in {*payload.get("nodes", {}), *payload.get("add", {}).get("nodes", {})}:
            return


async def test_the_hub_and_its_clients_hear_a_restarted_topology(settings) -> None:
    async with open_actor_system(supervision_tree(settings)) as system:
        await deliver(system, small_report(1))
        assert host_id("host-1") in await hosts_in(system)
        link = ClientLink(1024)
        await system.lookup(CLIENTS).start_child(client_spec("c", link, HUB, View.HOSTS, settings, LiveCounters()))
        versions: list[int] = []
        with trio.fail_after(10):
            await _until_seen(link, host_id("host-1"), versions)  # joined, before the crash

        system.lookup(TOPOLOGY).tell(Poison())
        with trio.fail_after(10):
            while next(c for c in system.snapshot().root.children if c.path == TOPOLOGY).restarts < 1:
                await trio.sleep(0.01)
        await deliver(system, small_report(2))
        assert host_id("host-2") in await hosts_in(system)
        with trio.fail_after(10):
            await _until_seen(link, host_id("host-2"), versions)
        assert versions == sorted(versions) and len(set(versions)) == len(versions), versions
