"""Agents' reports against a real server: a report acknowledges a command its
socket did not acknowledge in time, only the agent that received a command may
report on it, and a late failure after a time-out is not a "duplicate"."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from trio_websocket import ConnectionClosed

from tests.integration.test_commands import Operator, setup
from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent
from tests.waiting import eventually


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(["--timeout-grace", "0s"]) as process:
        yield process


async def status_becomes(client: httpx.AsyncClient, operator: Operator, agent: StatusAgent, command_id: str,
                         status: str) -> None:
    async def reached() -> bool:
        return (await operator.get(client, agent.deployment_hash, command_id))["status"] == status

    await eventually(reached, deadline=30)


async def test_a_report_of_a_command_the_socket_did_not_acknowledge_in_time_is_taken(server: ServerProcess) -> None:
    # The agent ran the command but its ``received`` never came: the socket
    # closed 1008 and the command went back to the queue. Its report was
    # refused (409 "not delivered"), and the next poll ran it a second time.
    async with httpx.AsyncClient(timeout=30) as client:
        operator, agent = await setup(server, client)
        async with agent.socket(acknowledge=False) as silent:
            created = await operator.command(client, agent.deployment_hash)
            command_id = created["command_id"]
            assert (await silent.message("command"))["item"]["command_id"] == command_id
            with pytest.raises(ConnectionClosed) as closed:
                await silent.message("never", deadline=30)  # the ack deadline is 10 s
            assert (closed.value.reason.code, closed.value.reason.reason) == (1008, "command not acknowledged")
        await status_becomes(client, operator, agent, command_id, "queued")

        answer = await agent.report(client, command_id, "success", result={"ran": 1})
        assert answer.status_code == 200, answer.text
        command = await operator.get(client, agent.deployment_hash, command_id)
        assert (command["status"], command["result"]) == ("completed", {"ran": 1})
        assert [h["event"] for h in command["history"]][1:] == ["deliver", "return", "deliver", "complete"]
        assert (await agent.wait(client, timeout=1)).status_code == 204  # not handed out again


async def test_an_agent_enrolled_after_another_received_a_command_cannot_report_it(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        operator, first = await setup(server, client)
        created = await operator.command(client, first.deployment_hash)
        polled = await first.poll(client, timeout=5)
        assert polled is not None and polled.command_id == created["command_id"]
        renewed = await client.post(operator.url(first.deployment_hash, "/enrollment"), headers=operator.auth)
        assert renewed.status_code == 201, renewed.text
        registered = await client.post(f"{server.base_url}/api/v1/agent/register", json={
            "deployment_hash": first.deployment_hash, "enrollment_token": renewed.json()["enrollment_token"]})
        assert registered.status_code == 201, registered.text
        second = StatusAgent(server.base_url, registered.json()["agent_id"], registered.json()["agent_token"],
                             first.deployment_hash)

        answer = await second.report(client, polled.command_id, "success", result={"forged": True})
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["code"] == "report_conflict"
        # The first agent retired before it reported: the command ended, saying why, not as the second said.
        command = await operator.get(client, first.deployment_hash, polled.command_id)
        assert (command["status"], command["result"]) == ("failed", None), command
        assert "decommissioned or replaced" in command["error"]
        assert command["history"][-1]["detail"]["agent_id"] == first.agent_id


async def test_an_outcome_reported_after_the_server_timed_the_command_out_is_recorded_beside_it(
        server: ServerProcess) -> None:
    """The agent ran it after all: its late outcome was refused 409 and its
    result lost, the user told only "timed out". It is recorded now (once),
    the status and error left as the time-out made them."""
    async with httpx.AsyncClient(timeout=30) as client:
        operator, agent = await setup(server, client)
        created = await operator.command(client, agent.deployment_hash, timeout_seconds=1)
        polled = await agent.poll(client, timeout=5)
        assert polled is not None and polled.command_id == created["command_id"]
        await status_becomes(client, operator, agent, polled.command_id, "failed")

        late = await agent.report(client, polled.command_id, "success", result={"restarted": True})
        assert late.status_code == 200, late.text
        again = await agent.report(client, polled.command_id, "success", result={"restarted": True})
        assert again.status_code == 200 and again.json()["status"] == "duplicate", again.text
        other = await agent.report(client, polled.command_id, "failed", error="disk full")
        assert (other.status_code, other.json()["error"]["code"]) == (409, "report_conflict"), other.text
        command = await operator.get(client, agent.deployment_hash, polled.command_id)
        assert (command["status"], command["error"], command["result"]) == ("failed", "timed out", {"restarted": True})
        assert command["history"][-1]["event"] == "late_outcome"
        assert command["history"][-1]["detail"]["status"] == "completed"
