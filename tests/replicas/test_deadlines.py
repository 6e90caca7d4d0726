"""Deadlines across replicas: a time-out fires once, also when the replica that
delivered the command is gone, and a scheduled command starts on the replica
left."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime

import httpx
import trio

from tests.integration.test_commands import Operator, enroll, fresh
from tests.replicas.cluster import events_until, on, operator_on, user_events
from tests.server_process import ServerProcess
from tests.waiting import eventually


def _alert_of(command_id: str):  # noqa: ANN202 - a predicate
    return lambda event: event["type"] == "system_alert" and command_id in event["message"]


async def _finished(client: httpx.AsyncClient, operator: Operator, deployment_hash: str, command_id: str) -> dict:
    command = await operator.get(client, deployment_hash, command_id)
    return command if command["status"] in ("failed", "completed", "expired", "cancelled") else {}


async def test_a_time_out_fires_once_with_both_replicas_up(replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        operator = Operator(a, fresh("user"), fresh("tenant"))
        agent = await enroll(client, a, operator)
        async with user_events(a, operator) as on_a, user_events(b, operator) as on_b:
            created = await operator.command(client, agent.deployment_hash, timeout_seconds=1)
            polled = await on(agent, b).poll(client, timeout=10)
            assert polled is not None
            # Both replicas hold the command with its deadline; one of them fires it.
            command = await eventually(lambda: _finished(client, operator, agent.deployment_hash,
                                                         created["command_id"]))
            for ws in (on_a, on_b):
                alerts = [e for e in await events_until(ws, _alert_of(created["command_id"]))
                          if e["type"] == "system_alert"]
                assert len(alerts) == 1
                await ws.send_message('{"type":"ping"}')
                assert await ws.get_message() == '{"type":"pong"}'  # no second alert before it
        assert (command["status"], command["error"]) == ("failed", "timed out")
        assert [h["status"] for h in command["history"]] == ["queued", "sent", "failed"]
        said = f"command {created['command_id']} of deployment {agent.deployment_hash} timed out"
        logged = [s.stderr().count(said) for s in (a, b)]
        assert sorted(logged) == [0, 1], "one replica fired it; the other stayed quiet"


async def test_a_time_out_fires_on_the_replica_left_when_the_other_is_killed(
        replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        operator = Operator(a, fresh("user"), fresh("tenant"))
        agent = await enroll(client, a, operator)
        async with user_events(b, operator) as on_b:
            created = await operator.command(client, agent.deployment_hash, timeout_seconds=2)
            polled = await agent.poll(client, timeout=10)  # delivered by A
            assert polled is not None and polled.command_id == created["command_id"]
            a.stop(signal.SIGKILL)
            via_b = operator_on(operator, b)
            command = await eventually(lambda: _finished(client, via_b, agent.deployment_hash,
                                                         created["command_id"]))
            alerts = [e for e in await events_until(on_b, _alert_of(created["command_id"]))
                      if e["type"] == "system_alert"]
        assert len(alerts) == 1
        assert (command["status"], command["error"]) == ("failed", "timed out")
        assert [h["status"] for h in command["history"]] == ["queued", "sent", "failed"]


async def test_a_command_scheduled_on_a_starts_on_b_once_a_is_gone(
        replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        operator = Operator(a, fresh("user"), fresh("tenant"))
        agent = await enroll(client, a, operator)
        due = datetime.fromtimestamp(time.time() + 3, UTC)
        created = await operator.command(client, agent.deployment_hash,
                                         schedule_at=due.isoformat().replace("+00:00", "Z"))
        a.stop(signal.SIGKILL)
        with trio.fail_after(20):
            polled = await on(agent, b).poll(client, timeout=15)
        assert polled is not None and polled.command_id == created["command_id"]
        assert time.time() >= due.timestamp()
        command = await operator_on(operator, b).get(client, agent.deployment_hash, created["command_id"])
        assert [h["status"] for h in command["history"]] == ["queued", "sent"]
