"""Commands across two replicas: created on one, delivered to a poll held on
the other, exactly once; users hear of a change on either replica the same."""

from __future__ import annotations

import httpx
import psycopg
import trio

from tests.integration.test_commands import Operator, enroll, fresh
from tests.replicas.cluster import events_until, held_polls, on, operator_on, user_events
from tests.server_process import ServerProcess
from tests.status_agent import PolledCommand
from tests.waiting import eventually


async def test_a_command_created_on_a_reaches_a_poll_held_on_b_once(
        replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        operator = Operator(a, fresh("user"), fresh("tenant"))
        agent = await enroll(client, a, operator)  # enrolled on A: B hears of it from the database
        polled: list[PolledCommand | None] = []

        async def poll_b() -> None:
            polled.append(await on(agent, b).poll(client, timeout=30))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll_b)
            await eventually(lambda: held_polls(client, b))
            created = await operator.command(client, agent.deployment_hash, type="restart")
        assert [p.command_id if p else None for p in polled] == [created["command_id"]]

        # Nothing more for anyone: a poll on A and one on B both find nothing.
        assert await agent.poll(client, timeout=1) is None
        assert await on(agent, b).poll(client, timeout=1) is None
        command = await operator_on(operator, b).get(client, agent.deployment_hash, created["command_id"])
        assert [h["status"] for h in command["history"]] == ["queued", "sent"]


async def test_users_on_either_replica_hear_of_a_change_made_on_the_other_once(
        replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        operator = Operator(a, fresh("user"), fresh("tenant"))
        agent = await enroll(client, a, operator)
        async with user_events(a, operator) as on_a, user_events(b, operator) as on_b:
            # Created on A, delivered and reported through B: each socket hears
            # every change once, in order, whichever replica made it.
            created = await operator.command(client, agent.deployment_hash, type="restart")
            polled = await on(agent, b).poll(client, timeout=10)
            assert polled is not None and polled.command_id == created["command_id"]
            await on(agent, b).report(client, polled.command_id, "executing")
            answer = await on(agent, b).report(client, polled.command_id, "success", result={"ok": True})
            assert answer.status_code == 200, answer.text
            finished = lambda event: event["type"] == "command_completed"  # noqa: E731 - a predicate
            heard_a = await events_until(on_a, finished)
            heard_b = await events_until(on_b, finished)
            # And nothing after it: a ping is answered before any late duplicate.
            for ws in (on_a, on_b):
                await ws.send_message('{"type":"ping"}')
                assert await ws.get_message() == '{"type":"pong"}'
        agent_events = [e for e in heard_a if e["type"] == "agent_status"]
        assert agent_events == []  # enrolled before the sockets opened
        assert heard_a == heard_b
        assert [(e["type"], e["status"]) for e in heard_b] == [
            ("command_progress", "queued"), ("command_progress", "sent"), ("command_progress", "executing"),
            ("command_completed", "completed")]
        assert heard_b[-1]["result"] == {"ok": True}


async def test_the_change_feed_reconnects_by_itself_and_says_so(
        replicas: tuple[ServerProcess, ServerProcess], postgres: str) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        operator = Operator(a, fresh("user"), fresh("tenant"))
        agent = await enroll(client, a, operator)
        with psycopg.connect(postgres, autocommit=True) as db:
            ended = db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                               (f"trioscope change feed {b.pid}",)).fetchall()
        assert ended == [(True,)]
        await eventually(lambda: _logged(b, "change feed: listening again"))
        assert "change feed: lost the connection" in b.stderr()
        # It follows changes again: a command created on A reaches a poll held on B.
        polled: list[PolledCommand | None] = []

        async def poll_b() -> None:
            polled.append(await on(agent, b).poll(client, timeout=30))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll_b)
            await eventually(lambda: held_polls(client, b))
            created = await operator.command(client, agent.deployment_hash)
        assert [p.command_id if p else None for p in polled] == [created["command_id"]]


async def _logged(server: ServerProcess, text: str) -> bool:
    return text in server.stderr()
