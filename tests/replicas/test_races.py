"""Cancel and confirm racing a delivery or a report on the other replica end
in one consistent status, which both replicas answer alike."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.integration.test_commands import Operator, enroll, fresh
from tests.replicas.cluster import held_polls, on, operator_on
from tests.server_process import ServerProcess
from tests.status_agent import PolledCommand, StatusAgent
from tests.waiting import eventually
from trioscope.domain.commands import TRANSITIONS, CommandStatus

ROUNDS = 6


def _legal(statuses: list[str]) -> bool:
    steps = zip(statuses, statuses[1:], strict=False)
    return all(CommandStatus(after) in TRANSITIONS[CommandStatus(before)].values() for before, after in steps)


async def _both_say(client: httpx.AsyncClient, operator: Operator, a: ServerProcess, b: ServerProcess,
                    deployment_hash: str, command_id: str) -> dict[str, Any]:
    """The command as each replica answers it: the same."""
    on_a = await operator_on(operator, a).get(client, deployment_hash, command_id)
    on_b = await operator_on(operator, b).get(client, deployment_hash, command_id)
    assert on_a == on_b
    assert _legal([h["status"] for h in on_a["history"]]), on_a["history"]
    return on_a


async def _setup(client: httpx.AsyncClient, a: ServerProcess) -> tuple[Operator, StatusAgent]:
    operator = Operator(a, fresh("user"), fresh("tenant"))
    return operator, await enroll(client, a, operator)


async def test_a_cancel_on_a_racing_a_delivery_on_b(replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        operator, agent = await _setup(client, a)
        for _ in range(ROUNDS):
            polled: list[PolledCommand | None] = []

            async def poll_b() -> None:
                polled.append(await on(agent, b).poll(client, timeout=3))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll_b)
                await eventually(lambda: held_polls(client, b))
                created = await operator.command(client, agent.deployment_hash)
                cancel = await client.post(operator.url(agent.deployment_hash, f"/commands/{created['command_id']}"
                                                                                 "/cancel"), headers=operator.auth)
            assert cancel.status_code == 200, cancel.text
            got = polled[0]
            if got is None:  # the cancel came first: nobody got it
                command = await _both_say(client, operator, a, b, agent.deployment_hash, created["command_id"])
                assert [h["status"] for h in command["history"]] == ["queued", "cancelled"]
                continue
            # Delivered first: the cancel goes to the agent, whose answer ends it.
            assert got.command_id == created["command_id"]
            notice = await on(agent, b).poll(client, timeout=5)
            assert notice is not None and notice.command_id.startswith("cancel:"), notice
            answer = await on(agent, b).report(client, got.command_id, "cancelled")
            assert answer.status_code == 200, answer.text
            command = await eventually(lambda: _finished_on_both(client, operator, a, b, agent.deployment_hash,
                                                                 created["command_id"]))
            assert [h["status"] for h in command["history"]] == ["queued", "sent", "sent", "cancelled"]


async def test_a_confirm_on_a_racing_a_cancel_on_b(replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        operator, agent = await _setup(client, a)
        for _ in range(ROUNDS):
            created = await operator.command(client, agent.deployment_hash, requires_confirmation=True)
            path = f"/commands/{created['command_id']}"
            answers: dict[str, httpx.Response] = {}

            async def act(action: str, server: ServerProcess) -> None:
                via = operator_on(operator, server)
                answers[action] = await client.post(via.url(agent.deployment_hash, f"{path}/{action}"),
                                                    headers=via.auth)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(act, "confirm", a)
                nursery.start_soon(act, "cancel", b)
            command = await _both_say(client, operator, a, b, agent.deployment_hash, created["command_id"])
            statuses = [h["status"] for h in command["history"]]
            assert answers["cancel"].status_code == 200, answers["cancel"].text  # either way it ends cancelled
            if answers["confirm"].status_code == 200:
                assert statuses == ["awaiting_confirmation", "queued", "cancelled"], statuses
            else:
                assert answers["confirm"].status_code == 409, answers["confirm"].text
                assert statuses == ["awaiting_confirmation", "cancelled"], statuses


async def test_a_cancel_on_a_racing_the_agents_report_on_b(replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        operator, agent = await _setup(client, a)
        for _ in range(ROUNDS):
            created = await operator.command(client, agent.deployment_hash)
            polled = await agent.poll(client, timeout=5)  # delivered by A
            assert polled is not None and polled.command_id == created["command_id"]
            answers: dict[str, httpx.Response] = {}

            async def cancel() -> None:
                answers["cancel"] = await client.post(
                    operator.url(agent.deployment_hash, f"/commands/{created['command_id']}/cancel"),
                    headers=operator.auth)

            async def report() -> None:
                answers["report"] = await on(agent, b).report(client, created["command_id"], "success",
                                                              result={"done": True})

            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel)
                nursery.start_soon(report)
            assert answers["report"].status_code == 200, answers["report"].text
            command = await _both_say(client, operator, a, b, agent.deployment_hash, created["command_id"])
            assert (command["status"], command["result"]) == ("completed", {"done": True})
            statuses = [h["status"] for h in command["history"]]
            if answers["cancel"].status_code == 200:  # asked of the agent before it reported
                assert statuses == ["queued", "sent", "sent", "completed"], statuses
            else:
                assert answers["cancel"].status_code == 409, answers["cancel"].text
                assert statuses == ["queued", "sent", "completed"], statuses


async def _finished_on_both(client: httpx.AsyncClient, operator: Operator, a: ServerProcess, b: ServerProcess,
                            deployment_hash: str, command_id: str) -> dict[str, Any] | None:
    on_a = await operator_on(operator, a).get(client, deployment_hash, command_id)
    on_b = await operator_on(operator, b).get(client, deployment_hash, command_id)
    return on_a if on_a == on_b and CommandStatus(on_a["status"]).terminal else None


async def test_one_enrollment_token_used_on_both_replicas_at_once_enrolls_one_agent(
        replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(ROUNDS):
            deployment = await Operator(a, fresh("user"), fresh("tenant")).create_deployment(client)
            answers: list[int] = []

            async def register(server: ServerProcess) -> None:
                response = await client.post(f"{server.base_url}/api/v1/agent/register", json={
                    "deployment_hash": deployment["deployment_hash"],
                    "enrollment_token": deployment["enrollment_token"], "public_key": "k",
                    "capabilities": [], "system_info": {}, "agent_version": "1"})
                answers.append(response.status_code)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(register, a)
                nursery.start_soon(register, b)
            assert sorted(answers) == [201, 401], answers



async def test_one_idempotency_key_sent_to_both_replicas_at_once_creates_one_command(
        replicas: tuple[ServerProcess, ServerProcess]) -> None:
    """A retry racing its first try through the other replica: the key's
    unique row decides, and every answer is the one command's."""
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        operator = Operator(a, fresh("user"), fresh("tenant"))
        deployment_hash = (await operator.create_deployment(client))["deployment_hash"]
        sides = [operator_on(operator, server) for server in (a, b)]
        for round_ in range(ROUNDS):
            answers: list[httpx.Response] = []

            async def create(side: Operator, key: str) -> None:
                answers.append(await client.post(side.url(deployment_hash, "/commands"), json={"type": "restart"},
                                                 headers={**side.auth, "Idempotency-Key": key}))

            async with trio.open_nursery() as nursery:
                for side in sides * 3:
                    nursery.start_soon(create, side, f"key-{round_}")
            assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
            assert len({r.json()["command_id"] for r in answers}) == 1, [r.text for r in answers]
            assert sum("Idempotent-Replayed" not in r.headers for r in answers) == 1
        listed = await client.get(operator.url(deployment_hash, "/commands"), headers=operator.auth)
        assert listed.json()["total"] == ROUNDS
