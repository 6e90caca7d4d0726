"""An agent that is connected is there: one holding a long-poll, or sending
anything on its socket, is neither found offline by the server's AgentOffline
rule nor shown offline in /metrics (``trydirect_agents_online``,
``trydirect_agent_last_seen_seconds``, which Prometheus' AgentOffline reads)."""

from __future__ import annotations

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from tests.integration.test_alerts import next_alert, nothing_else, user_socket
from tests.integration.test_commands import Operator, enroll, fresh
from tests.server_process import ServerProcess
from tests.status_agent import PolledCommand
from tests.waiting import eventually
from trioscope.wire import parse_timestamp

THRESHOLD_SECONDS = 2
THRESHOLD = ["--alert-agent-offline-after", f"{THRESHOLD_SECONDS}s", "--alert-evaluation-interval", "100ms",
             "--heartbeat-timeout", f"{THRESHOLD_SECONDS}s"]


async def presence(client: httpx.AsyncClient, server: ServerProcess, operator: Operator,
                   agent_id: str) -> tuple[float, float]:
    """(``trydirect_agents_online`` of the operator's tenant, ``trydirect_agent_last_seen_seconds`` of the agent)."""
    text = (await client.get(f"{server.base_url}/metrics")).text
    online, last_seen = 0.0, 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "trydirect_agents_online" and sample.labels.get("tenant") == operator.tenant:
                online = sample.value
            if sample.name == "trydirect_agent_last_seen_seconds" and sample.labels.get("agent") == agent_id:
                last_seen = sample.value
    return online, last_seen


async def test_an_agent_holding_a_long_poll_is_there_while_it_waits_and_when_it_is_answered() -> None:
    # No grace past a command's timeout: the agent runs it until then (heard from), and is silent after.
    with ServerProcess([*THRESHOLD, "--timeout-grace", "0s"]) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            operator = Operator(server, fresh("user"), fresh("tenant"))
            async with open_websocket_url(user_socket(server, operator)) as ws:
                agent = await enroll(client, server, operator)
                answered: list[PolledCommand | None] = []

                async def hold_a_poll() -> None:
                    answered.append(await agent.poll(client, timeout=120))  # held until it is given a command

                async def poll_arrived() -> float | None:
                    online, last_seen = await presence(client, server, operator, agent.agent_id)
                    return last_seen if online == 1 else None

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(hold_a_poll)
                    arrived = await eventually(poll_arrived)  # its start heard from, as any request

                    async def held_past_the_thresholds() -> bool:
                        # /metrics sampled while the poll is held, until the server has heard from the
                        # agent three thresholds after the poll's start (its clock, not this one: the
                        # sampling rate and /metrics' latency do not matter). Online in each sample means
                        # heard from within the threshold by the server's clock at that scrape.
                        online, last_seen = await presence(client, server, operator, agent.agent_id)
                        assert not answered, answered
                        assert online == 1, (online, last_seen)
                        return last_seen > arrived + 3 * THRESHOLD_SECONDS

                    await eventually(held_past_the_thresholds, deadline=60)
                    await nothing_else(ws)  # no AgentOffline while it waited
                    # Answers the poll; its timeout short: an agent running a command is there until it passes.
                    command = await operator.command(client, agent.deployment_hash, timeout_seconds=1)
                polled = answered[0]
                assert polled is not None and polled.command_id == command["command_id"]
                sent = await operator.get(client, agent.deployment_hash, command["command_id"])
                _, last_seen = await presence(client, server, operator, agent.agent_id)
                # Heard from when answered, after it was handed the command (the server's clock
                # both; sent_at is to the millisecond), not only at the start and while it waited.
                assert last_seen >= parse_timestamp(sent["sent_at"]).timestamp() - 0.001, (last_seen, sent)

                # Silent from now on, past its command's timeout: found offline, as the test's thresholds make it.
                while "alert" not in (fired := await next_alert(ws)):
                    assert "timed out" in fired["message"], fired  # its command's, told to its users
                assert (fired["alert"], fired["status"], fired["labels"]["agent"]) == (
                    "AgentOffline", "firing", agent.agent_id)


async def test_any_message_on_an_agents_socket_is_the_agent_there() -> None:
    # Pings seldom: only the agent's own messages, refused ones, speak for it.
    with ServerProcess([*THRESHOLD, "--ws-ping-interval", "1m"]) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            operator = Operator(server, fresh("user"), fresh("tenant"))
            async with open_websocket_url(user_socket(server, operator)) as ws:
                agent = await enroll(client, server, operator)
                async with agent.socket() as channel:
                    for _ in range(10):  # 5 s and more of refused messages: two and a half thresholds
                        await channel.ws.send_message('{"type":"hello"}')
                        assert (await channel.message("ack"))["error"]["code"] == "invalid_message"
                        await trio.sleep(0.5)
                    await nothing_else(ws)
                    online, _ = await presence(client, server, operator, agent.agent_id)
                    assert online == 1
