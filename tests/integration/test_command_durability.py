"""``kill -9`` of the server under load loses no acknowledged command, status,
token or audit record: everything answered 2xx before the kill is there after a
restart on the same data directory, and every history is a legal path; open
commands' deadlines run on after the restart with no request for them. And a
restart forgets agent request ids, so requests signed before it are refused."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from tests.integration.test_commands import Operator, enroll
from tests.server_process import ServerProcess
from tests.waiting import eventually
from trioscope.domain.commands import TRANSITIONS, CommandEvent, CommandStatus

pytestmark = pytest.mark.usefixtures("database")  # every test on each store backend (integration/conftest.py)


def _legal(history: list[dict[str, Any]]) -> bool:
    statuses = [CommandStatus(h["status"]) for h in history]
    for before, entry in zip(statuses, history[1:], strict=False):
        if TRANSITIONS[before].get(CommandEvent(entry["event"])) is not CommandStatus(entry["status"]):
            return False
    return history[0]["event"] == "created"


async def test_kill_9_mid_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    env = {"TRIOSCOPE_STORAGE_DATA_DIR": str(tmp_path), "TRIOSCOPE_LIMITS_PER_USER": "1000000",
           "TRIOSCOPE_LIMITS_PER_ADDRESS": "1000000", "TRIOSCOPE_LIMITS_PER_AGENT": "1000000"}
    created: list[str] = []
    completed: list[str] = []
    with ServerProcess(env=env) as server:
        async with httpx.AsyncClient(timeout=10) as client:
            operator = Operator(server, "kim", "durable")
            agent = await enroll(client, server, operator)

            async def create_forever() -> None:
                while True:
                    response = await client.post(operator.url(agent.deployment_hash, "/commands"),
                                                 json={"type": "restart"}, headers=operator.auth)
                    if response.status_code == 202:
                        created.append(response.json()["command_id"])

            async def work_forever() -> None:
                while True:
                    polled = await agent.poll(client, timeout=2)
                    if polled is not None and (await agent.report(client, polled.command_id)).status_code == 200:
                        completed.append(polled.command_id)

            async def guarded(fn: Any) -> None:
                try:
                    await fn()
                except httpx.HTTPError:
                    pass  # the server is gone: that is the point

            async with trio.open_nursery() as nursery:
                for _ in range(6):
                    nursery.start_soon(guarded, create_forever)
                nursery.start_soon(guarded, work_forever)
                with trio.fail_after(60):
                    while len(created) < 150 or len(completed) < 20:
                        await trio.sleep(0.01)
                os.kill(server.pid, signal.SIGKILL)
                server.wait()
                nursery.cancel_scope.cancel()

    acknowledged_created, acknowledged_completed = list(created), list(completed)
    with ServerProcess(env=env) as server:
        async with httpx.AsyncClient(timeout=10) as client:
            operator = Operator(server, "kim", "durable")
            listing = await client.get(operator.url(agent.deployment_hash, "/commands"), params={"limit": 500},
                                       headers=operator.auth)
            assert listing.status_code == 200
            total = listing.json()["total"]
            assert total >= len(acknowledged_created)
            for command_id in acknowledged_created:
                command = await operator.get(client, agent.deployment_hash, command_id)
                assert _legal(command["history"]), command["history"]
            for command_id in acknowledged_completed:
                assert (await operator.get(client, agent.deployment_hash, command_id))["status"] == "completed"
            # The agent's token survived too: it polls without a 401.
            restarted = attrs.evolve(agent, base_url=server.base_url)
            assert (await restarted.wait(client, timeout=1)).status_code in (200, 204)
            audit = await client.get(f"{server.base_url}/api/v1/audit", params={"action": "command.create", "limit": 1},
                                     headers={"Authorization": f"Bearer {server.user_token('kim', 'durable', 'ADMIN')}"})
            assert audit.json()["total"] >= len(acknowledged_created)


async def test_a_request_signed_before_a_restart_is_refused_after_it(tmp_path: Path, database: str) -> None:
    """With SQLite the replay window lives in memory: a poll captured before a
    restart must not be accepted again by the new process, which never saw its
    request id. With PostgreSQL the window is in the database (replicas share
    it): the new process knows the id, and refuses it as a replay."""
    env = {"TRIOSCOPE_STORAGE_DATA_DIR": str(tmp_path)}
    with ServerProcess(env=env) as server:
        async with httpx.AsyncClient(timeout=10) as client:
            agent = await enroll(client, server, Operator(server, "lee", "replays"))
            captured = agent.headers(b"")
            assert (await agent.wait(client, timeout=1, **captured)).status_code == 204
    # X-Timestamp has whole seconds: a restart within the captured second could not tell.
    await trio.sleep_until(trio.current_time() + max(0.0, int(captured["X-Timestamp"]) + 1 - time.time()))
    with ServerProcess(env=env) as server:
        async with httpx.AsyncClient(timeout=10) as client:
            agent = attrs.evolve(agent, base_url=server.base_url)
            replayed = await agent.wait(client, timeout=1, **captured)
            assert replayed.status_code == 401, replayed.text
            expected = "replayed_request" if database == "postgresql" else "signed_before_start"
            assert replayed.json()["error"]["code"] == expected
            assert (await agent.wait(client, timeout=1)).status_code == 204  # a freshly signed poll is served


async def test_a_sent_command_times_out_after_a_restart_though_nobody_asks(tmp_path: Path) -> None:
    env = {"TRIOSCOPE_STORAGE_DATA_DIR": str(tmp_path)}
    with ServerProcess(["--timeout-grace", "0s"], env=env) as server:
        async with httpx.AsyncClient(timeout=10) as client:
            operator = Operator(server, "kim", "durable")
            agent = await enroll(client, server, operator)
            sent = await operator.command(client, agent.deployment_hash, timeout_seconds=2)
            polled = await agent.poll(client, timeout=5)
            assert polled is not None and polled.command_id == sent["command_id"]
        os.kill(server.pid, signal.SIGKILL)  # the agent dies with it: nothing will ever ask for this deployment
        server.wait()
    with ServerProcess(["--timeout-grace", "0s"], env=env) as server:
        async with httpx.AsyncClient(timeout=10) as client:
            operator = Operator(server, "kim", "durable")

            async def timed_out() -> dict[str, Any] | None:
                # Reading a command goes to the database, not to the deployment's queue actor.
                command = await operator.get(client, agent.deployment_hash, sent["command_id"])
                return command if command["status"] != "sent" else None

            command = await eventually(timed_out)
        assert command["status"] == "failed" and "timed out" in command["error"], command
        assert [h["status"] for h in command["history"]] == ["queued", "sent", "failed"]
        assert "resumed 1 deployment queue(s) with open commands" in server.stderr()
