"""What replicas sharing a report bus show and answer as agents come and go:
a replica restarted after agents went stale shows what the running one does,
a report over ``--max-agents`` is refused before it goes on the stream (503 as
without a bus), and a report the NATS server would not take in one message is
answered 413, not 503 for ever."""

from __future__ import annotations

import os
import random
import subprocess
import time
from typing import Any

import httpx
import orjson
import pytest

from tests.bus_server import OwnNatsServer, _wait_until_answers, publish_dated
from tests.replicas.conftest import replica
from tests.replicas.test_report_bus import SMALL, bus_args, get, host_nodes, ready
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually

STALE = 90.0
"""``--stale-node-threshold`` of these replicas, in seconds."""


async def agents_seen(client: httpx.AsyncClient, server: ServerProcess) -> dict[str, tuple[str, str]]:
    rows = (await get(client, server, "/api/v1/agents/list"))["agents"]
    return {row["agent_id"]: (row["status"], row["last_seen"]) for row in rows}


async def latest_status(client: httpx.AsyncClient, server: ServerProcess, agent_id: str) -> int:
    return (await client.get(f"{server.base_url}/api/v1/query/agents/{agent_id}/latest")).status_code


async def test_a_replica_restarted_after_agents_went_stale_shows_what_the_running_one_shows(
        request: pytest.FixtureRequest, postgres_url: str, nats_url: str, stream: str) -> None:
    """Three agents silent for longer than the stale threshold, then two new
    ones, at ``--max-agents 3``: the running replica made room for the new
    ones and removed the silent ones' hosts; a replica started afterwards
    replays the stream and, once ready, shows the same hosts and agents (it
    used to count every replayed agent as heard from at its start: the first
    three held every place, the new ones were left out and 404'd, all were
    "healthy", and their hosts stayed until its first cleanup)."""
    now = time.time()
    flags = (*bus_args(nats_url, stream), "--stale-node-threshold", f"{STALE:g}s", "--max-agents", "3")
    async with httpx.AsyncClient(timeout=30) as client:
        # A cleanup every second stands in for the minutes the running replica ran.
        with replica(postgres_url, *flags, "--cleanup-interval", "1s") as a:
            await eventually(lambda: ready(client, a))
            old = now - STALE - 900
            publish_dated(nats_url, stream, [(1, old), (2, old + 1), (3, old + 2), (4, now - 20), (5, now - 10)],
                          **SMALL)

            async def a_settled() -> bool:
                return await host_nodes(client, a) == {"host:host-4", "host:host-5"}

            await eventually(a_settled)
            expected_agents = await agents_seen(client, a)
            assert {"agent-4", "agent-5"} <= expected_agents.keys(), expected_agents
            assert all(status == "stale" for agent, (status, _) in expected_agents.items()
                       if agent not in ("agent-4", "agent-5")), expected_agents
            with replica(postgres_url, *flags) as c:  # the restarted one (its cleanup minutes away)
                await eventually(lambda: ready(client, c), deadline=60)
                assert await host_nodes(client, c) == {"host:host-4", "host:host-5"}
                assert await agents_seen(client, c) == expected_agents
                for agent in ("agent-4", "agent-5"):
                    assert await latest_status(client, c, agent) == 200, agent
                # A stale agent does not block a new one at --max-agents, here as on the running replica.
                posted = await client.post(f"{c.base_url}/api/v1/reports",
                                           json=host_report(6, timestamp=time.time(), **SMALL))
                assert posted.status_code == 202, posted.text

                async def both_have_it() -> bool:
                    return all([await latest_status(client, server, "agent-6") == 200 for server in (a, c)])

                await eventually(both_have_it)
                assert "left out here" not in a.stderr() + c.stderr()


@pytest.mark.parametrize("mode", ["bus", "in-process"])
async def test_a_new_agent_beyond_max_agents_gets_503_too_many_agents_with_a_bus_as_without(
        mode: str, postgres_url: str, nats_url: str, stream: str) -> None:
    """With a bus the roster admits the agent before its report is published:
    it used to get 202, and every replica then left the report out."""
    flags = bus_args(nats_url, stream) if mode == "bus" else ()
    async with httpx.AsyncClient(timeout=30) as client:
        with replica(postgres_url, *flags, "--max-agents", "2") as a:
            await eventually(lambda: ready(client, a))
            for index in (1, 2):
                posted = await client.post(f"{a.base_url}/api/v1/reports",
                                           json=host_report(index, timestamp=time.time(), **SMALL))
                assert posted.status_code == 202, posted.text
            refused = await client.post(f"{a.base_url}/api/v1/reports",
                                        json=host_report(3, timestamp=time.time(), **SMALL))
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "too_many_agents"
            assert int(refused.headers["Retry-After"]) > 0
            again = await client.post(f"{a.base_url}/api/v1/reports",
                                      json=host_report(1, timestamp=time.time(), **SMALL))
            assert again.status_code == 202, again.text  # known agents go on
            assert await host_nodes(client, a) == {"host:host-1", "host:host-2"}
            assert "left out here" not in a.stderr()


MAX_PAYLOAD = 64 * 1024


class SmallPayloadNats(OwnNatsServer):
    """A nats-server of the test's own whose ``max_payload`` is ``MAX_PAYLOAD``
    (a configuration-file option), so that the test's report stays small."""

    def start(self) -> None:
        config = os.path.join(self._store.name, "nats.conf")
        with open(config, "w") as out:
            out.write(f"max_payload: {MAX_PAYLOAD}\n")
        self.process = subprocess.Popen([self.binary, "-c", config, "-a", "127.0.0.1", "-p", str(self.port), "-js",
                                         "-sd", self._store.name],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_until_answers(self.port, self.process)


def incompressible_report(index: int, processes: int, chars: int) -> dict[str, Any]:
    """A valid report whose command lines are random printable text: it packs to ~0.8 of its JSON."""
    report = host_report(index, timestamp=time.time(), containers=0, processes=processes, connections=0)
    letters = [chr(c) for c in range(33, 127) if chr(c) not in '\\"']
    pick = random.Random(index)
    for process in report["processes_info"]["processes"]:
        process["cmdline"] = "".join(pick.choice(letters) for _ in range(chars))
    return report


async def test_a_report_over_the_nats_max_payload_gets_413_naming_the_limit_not_503_for_ever(
        postgres_url: str) -> None:
    """The probe resends a 503 for ever and shrinks its report only on 413."""
    server = SmallPayloadNats()
    try:
        server.start()
        with replica(postgres_url, *bus_args(server.url, "payload")) as a:
            async with httpx.AsyncClient(timeout=30) as client:
                await eventually(lambda: ready(client, a))
                big = incompressible_report(1, processes=60, chars=1500)  # ~90 KB of JSON, ~75 KB packed
                body = orjson.dumps(big)
                assert len(body) > MAX_PAYLOAD
                for _ in range(2):  # the same answer each time: resending is no use
                    answer = await client.post(f"{a.base_url}/api/v1/reports", content=body,
                                               headers={"Content-Type": "application/json"})
                    assert answer.status_code == 413, answer.text
                    error = answer.json()["error"]
                    assert error["code"] == "payload_too_large"
                    assert error["details"]["limit_bytes"] == MAX_PAYLOAD
                    assert error["details"]["envelope_bytes"] > MAX_PAYLOAD
                    assert "max_payload" in error["message"] and str(MAX_PAYLOAD) in error["message"]
                    assert "Retry-After" not in answer.headers
                small = await client.post(f"{a.base_url}/api/v1/reports",
                                          json=host_report(2, timestamp=time.time(), **SMALL))
                assert small.status_code == 202, small.text  # the connection to the bus is as it was
                assert (await get(client, a, "/api/v1/query/stats"))["bus"]["reconnects"] == 0
    finally:
        server.stop()
        server._store.cleanup()
