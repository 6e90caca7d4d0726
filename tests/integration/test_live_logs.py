"""Live container logs: a ``docker.logs`` command with ``follow: true`` streams
``log_entry`` events to the requesting user's ``/ws/user`` sockets until it is
stopped or reaches a limit; the agent's batches are validated and bounded.

The first tests speak the agent's side by hand (the status agent's helper);
the last runs the real probe against a real Docker-API engine."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import docker
import docker.errors
import httpx
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.integration.test_commands import Operator, enroll, fresh
from tests.integration.test_probe import probe
from tests.integration.test_probe_containers import container  # noqa: F401 (a fixture)
from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent
from tests.waiting import eventually

IMAGE = "localhost/busybox:latest"
LOGS = "/api/v1/agent/commands/logs"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(["--log-follows-per-user", "2", "--log-follow-lines-per-second", "5",
                        "--log-follow-max-bytes", "2KiB"]) as process:
        yield process


@asynccontextmanager
async def user_socket(server: ServerProcess, operator: Operator) -> AsyncIterator[WebSocketConnection]:
    token = operator.auth["Authorization"][7:]
    url = server.base_url.replace("http://", "ws://") + f"/ws/user/{operator.user_id}"
    async with open_websocket_url(url, subprotocols=["trioscope", f"bearer.{token}"]) as ws:
        yield ws


async def until_pong(ws: WebSocketConnection) -> list[dict[str, Any]]:
    """Every event up to the answer of a ping sent now: what the server had sent before."""
    await ws.send_message(json.dumps({"type": "ping"}))
    seen = []
    with trio.fail_after(20):
        while (event := json.loads(await ws.get_message()))["type"] != "pong":
            seen.append(event)
    return seen


def entry(message: str, source: str = "stdout") -> dict[str, Any]:
    return {"timestamp": "2026-12-02T11:00:00.123456Z", "level": "info", "message": message, "source": source}


async def follow(client: httpx.AsyncClient, operator: Operator, hash_: str, **parameters: Any) -> httpx.Response:
    return await client.post(operator.url(hash_, "/commands"), headers=operator.auth, json={
        "type": "docker.logs", "parameters": {"container": "web", "follow": True, **parameters}})


async def test_lines_reach_the_requesting_user_until_the_follow_is_stopped(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        operator = Operator(server, fresh("user"), fresh("tenant"))
        agent = await enroll(client, server, operator)
        hash_ = agent.deployment_hash
        colleague = Operator(server, fresh("user"), operator.tenant)  # same tenant, not an admin
        admin = Operator(server, fresh("admin"), operator.tenant, "ADMIN")
        async with (user_socket(server, operator) as mine, user_socket(server, colleague) as theirs,
                    user_socket(server, admin) as admins):
            created = await follow(client, operator, hash_)
            assert created.status_code == 202, created.text
            command_id = created.json()["command_id"]
            polled = await agent.poll(client)
            assert polled is not None and polled.command_id == command_id

            sent = await agent.signed_post(client, LOGS, {"command_id": command_id, "deployment_hash": hash_,
                                                          "entries": [entry("hello"), entry("oops", "stderr")]})
            assert sent.status_code == 200, sent.text
            assert sent.json() == {"accepted": 2, "dropped": 0, "following": True, "reason": None}
            lines = [e for e in await until_pong(mine) if e["type"] == "log_entry"]
            assert [(e["message"], e["source"], e["level"]) for e in lines] == [("hello", "stdout", "info"),
                                                                                 ("oops", "stderr", "info")]
            assert lines[0]["timestamp"] == "2026-12-02T11:00:00.123456Z"
            assert (lines[0]["command_id"], lines[0]["deployment_hash"], lines[0]["container"]) == (
                command_id, hash_, "web")
            assert [e for e in await until_pong(theirs) if e["type"] == "log_entry"] == []
            assert [e["message"] for e in await until_pong(admins) if e["type"] == "log_entry"] == ["hello", "oops"]

            stopped = await client.post(operator.url(hash_, f"/commands/{command_id}/cancel"), headers=operator.auth)
            assert stopped.status_code == 200, stopped.text
            late = await agent.signed_post(client, LOGS, {"command_id": command_id, "deployment_hash": hash_,
                                                          "entries": [entry("after the stop")]})
            assert late.status_code == 410, late.text
            assert late.json()["error"]["code"] == "follow_ended"
            assert late.json()["error"]["details"]["reason"] == "stopped"
            assert [e for e in await until_pong(mine) if e["type"] == "log_entry"] == []


async def test_bad_batches_are_refused_naming_the_field(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        operator = Operator(server, fresh("user"), fresh("tenant"))
        agent = await enroll(client, server, operator)
        hash_ = agent.deployment_hash
        command_id = (await follow(client, operator, hash_)).json()["command_id"]

        async def post(document: Any) -> httpx.Response:
            return await agent.signed_post(client, LOGS, document)

        cases = [
            ({"command_id": command_id, "deployment_hash": hash_, "entries": [{**entry("x"), "level": "loud"}]},
             "$.entries[0].level"),
            ({"command_id": command_id, "deployment_hash": hash_, "entries": [{**entry("x"), "timestamp": "soon"}]},
             "$.entries[0].timestamp"),
            ({"command_id": command_id, "deployment_hash": hash_, "entries": [entry("x" * 20_000)]},
             "$.entries[0].message"),
            ({"command_id": command_id, "deployment_hash": hash_, "entries": [entry("x")] * 501}, "$.entries"),
            ({"command_id": command_id, "deployment_hash": hash_, "entries": [{**entry("x"), "source": 1}]},
             "$.entries[0].source"),
        ]
        for document, field in cases:
            response = await post(document)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "invalid_log_entries" and field in response.text, response.text
        unknown = await post({"command_id": "cmd_nope", "deployment_hash": hash_, "entries": [entry("x")]})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "follow_not_found"
        other = await post({"command_id": command_id, "deployment_hash": "someone-else", "entries": []})
        assert other.status_code == 403
        unsigned = await client.post(f"{server.base_url}{LOGS}", json={"command_id": command_id,
                                                                          "deployment_hash": hash_, "entries": []})
        assert unsigned.status_code == 401

        bad_flag = await client.post(operator.url(hash_, "/commands"), headers=operator.auth, json={
            "type": "docker.logs", "parameters": {"container": "web", "follow": "yes"}})
        assert bad_flag.status_code == 400 and "$.parameters.follow" in bad_flag.text
        no_container = await client.post(operator.url(hash_, "/commands"), headers=operator.auth, json={
            "type": "docker.logs", "parameters": {"follow": True}})
        assert no_container.status_code == 400 and "$.parameters.container" in no_container.text
        bad_tail = await follow(client, operator, hash_, tail=-1)
        assert bad_tail.status_code == 400 and "$.parameters.tail" in bad_tail.text


async def test_follows_are_bounded_in_number_rate_and_volume(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        operator = Operator(server, fresh("user"), fresh("tenant"))
        agent = await enroll(client, server, operator)
        hash_ = agent.deployment_hash
        first = (await follow(client, operator, hash_)).json()["command_id"]
        assert (await follow(client, operator, hash_)).status_code == 202
        third = await follow(client, operator, hash_)  # the server allows two per user here
        assert third.status_code == 429, third.text
        assert third.json()["error"]["details"]["setting"] == "commands.follow_max_per_user"

        async with user_socket(server, operator) as ws:
            # 5 lines a second: a burst of 20 passes 5 of them.
            burst = await agent.signed_post(client, LOGS, {"command_id": first, "deployment_hash": hash_,
                                                           "entries": [entry(f"line {i}") for i in range(20)]})
            assert burst.json()["accepted"] == 5 and burst.json()["dropped"] == 15
            assert len([e for e in await until_pong(ws) if e["type"] == "log_entry"]) == 5

            # 2 KiB in all: a batch crossing it ends the follow.
            async def volume_reached() -> dict[str, Any] | None:
                answer = (await agent.signed_post(client, LOGS, {"command_id": first, "deployment_hash": hash_,
                                                                 "entries": [entry("y" * 300)]})).json()
                return answer if answer.get("following") is False else None

            ended = await eventually(volume_reached, deadline=30)
            assert ended["reason"] == "volume_limit"
            after = await agent.signed_post(client, LOGS, {"command_id": first, "deployment_hash": hash_,
                                                           "entries": [entry("z")]})
            assert after.status_code == 410 and after.json()["error"]["details"]["reason"] == "volume_limit"
        # The ended follow no longer counts.
        assert (await follow(client, operator, hash_)).status_code == 202


async def test_follows_whose_agent_is_retired_end_and_free_their_places(server: ServerProcess) -> None:
    """A follow's command failed by the server (its agent decommissioned before
    it reported) ends like one the agent finished: the user's places are free
    again (they could neither cancel it nor start another until its time
    limit), and no other agent's lines reach users under it."""
    async with httpx.AsyncClient(timeout=30) as client:
        operator = Operator(server, fresh("user"), fresh("tenant"))
        agent = await enroll(client, server, operator)
        hash_ = agent.deployment_hash
        follows = [(await follow(client, operator, hash_)).json()["command_id"] for _ in range(2)]
        for command_id in follows:
            polled = await agent.poll(client)
            assert polled is not None and polled.command_id == command_id
        assert (await follow(client, operator, hash_)).status_code == 429  # two per user here

        admin = attrs.evolve(operator, role="ADMIN")
        gone = await client.post(admin.url(hash_, f"/agents/{agent.agent_id}/decommission"), headers=admin.auth)
        assert gone.status_code == 200, gone.text

        async def failed() -> bool:
            return all([(await operator.get(client, hash_, c))["status"] == "failed" for c in follows])

        await eventually(failed, deadline=10)
        token = await client.post(operator.url(hash_, "/enrollment"), headers=operator.auth)
        registered = await client.post(f"{server.base_url}/api/v1/agent/register", json={
            "deployment_hash": hash_, "enrollment_token": token.json()["enrollment_token"]})
        assert registered.status_code == 201, registered.text
        successor = attrs.evolve(agent, agent_id=registered.json()["agent_id"], token=registered.json()["agent_token"])

        async def place_free() -> httpx.Response | None:
            again = await follow(client, operator, hash_)
            return again if again.status_code == 202 else None

        await eventually(place_free, deadline=10)  # not at the follows' time limit (10 minutes)
        late = await successor.signed_post(client, LOGS, {"command_id": follows[0], "deployment_hash": hash_,
                                                          "entries": [entry("not this agent's follow")]})
        assert late.status_code == 410, late.text
        assert late.json()["error"]["details"]["reason"] == "finished"


async def test_a_follow_ends_at_its_time_limit() -> None:
    with ServerProcess(["--log-follow-max-duration", "1s"]) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            operator = Operator(server, fresh("user"), fresh("tenant"))
            agent = await enroll(client, server, operator)
            hash_ = agent.deployment_hash
            command_id = (await follow(client, operator, hash_)).json()["command_id"]

            async def ended() -> httpx.Response | None:
                response = await agent.signed_post(client, LOGS, {"command_id": command_id, "deployment_hash": hash_,
                                                                  "entries": [entry("tick")]})
                assert response.status_code in (200, 410), response.text
                return response if response.status_code == 410 else None

            answer = await eventually(ended, deadline=30)
            assert answer.json()["error"]["details"]["reason"] == "time_limit"


# ---- the probe and a real engine --------------------------------------------------------------

@pytest.fixture
def chatty_container(docker_host: str) -> Iterator[Any]:
    client = docker.DockerClient(base_url=docker_host)
    script = "i=0; while true; do i=$((i+1)); echo out $i; echo err $i >&2; sleep 0.2; done"
    started = client.containers.run(IMAGE, ["sh", "-c", script], detach=True,
                                    name=f"logs-test-{uuid.uuid4().hex[:8]}")
    try:
        yield started
    finally:
        try:
            started.remove(force=True)
        except docker.errors.NotFound:
            pass
        client.close()


async def test_the_probe_streams_a_containers_log_until_stopped(docker_host: str, chatty_container: Any,
                                                                  tmp_path: Path) -> None:
    with ServerProcess() as server:
        async with httpx.AsyncClient(timeout=30) as client:
            operator = Operator(server, fresh("ops"), fresh("acme"))
            deployment = await operator.create_deployment(client)
            hash_ = deployment["deployment_hash"]
            with probe(server.base_url, "probe-logs", "--docker-host", docker_host, "--deployment-hash", hash_,
                       "--enrollment-token", deployment["enrollment_token"], "--state-dir", str(tmp_path)):
                async with user_socket(server, operator) as ws:
                    created = await follow(client, operator, hash_, container=chatty_container.id, tail=1)
                    assert created.status_code == 202, created.text
                    command_id = created.json()["command_id"]
                    seen: list[dict[str, Any]] = []
                    with trio.fail_after(60):
                        while {e["source"] for e in seen} != {"stdout", "stderr"} or len(seen) < 6:
                            event = json.loads(await ws.get_message())
                            if event["type"] == "log_entry" and event["command_id"] == command_id:
                                seen.append(event)
                    out = [e for e in seen if e["source"] == "stdout"]
                    numbers = [int(e["message"].split()[1]) for e in out]
                    # Every line, in order (the engine's timestamps are whole seconds: none is taken for a repeat).
                    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
                    assert all(e["message"].startswith("out ") for e in out)
                    assert all(e["message"].startswith("err ") and e["level"] == "error"
                               for e in seen if e["source"] == "stderr")
                    assert all(e["timestamp"].endswith("Z") and e["container"] == chatty_container.id for e in seen)

                    stopped = await client.post(operator.url(hash_, f"/commands/{command_id}/cancel"),
                                                headers=operator.auth)
                    assert stopped.status_code == 200, stopped.text
                    await until_pong(ws)  # what was on its way before the stop

                    async def cancelled() -> dict[str, Any] | None:
                        command = await operator.get(client, hash_, command_id)
                        return command if command["status"] == "cancelled" else None

                    command = await eventually(cancelled, deadline=60)
                    assert command["result"]["lines"] >= 6
                    # The container goes on writing; none of it reaches the user any more.
                    last = max(numbers)
                    async def written_on() -> bool:
                        tail = await trio.to_thread.run_sync(lambda: chatty_container.logs(tail=4).decode())
                        written = [int(line.split()[1]) for line in tail.splitlines() if line.startswith("out ")]
                        return bool(written) and last + 10 <= max(written)

                    await eventually(written_on, deadline=30)
                    assert [e for e in await until_pong(ws) if e["type"] == "log_entry"] == []


async def test_the_probe_ends_a_follow_at_the_servers_time_limit_and_when_the_container_stops(
        docker_host: str, chatty_container: Any, container: Any, tmp_path: Path) -> None:  # noqa: F811
    # Long enough for the chatty container to be killed within it on a loaded machine (3 s was not, once,
    # while a CI run shared the machine), short enough for the quiet one's limit to come within the test.
    with ServerProcess(["--log-follow-max-duration", "10s"]) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            operator = Operator(server, fresh("ops"), fresh("acme"))
            deployment = await operator.create_deployment(client)
            hash_ = deployment["deployment_hash"]
            with probe(server.base_url, "probe-logs", "--docker-host", docker_host, "--deployment-hash", hash_,
                       "--enrollment-token", deployment["enrollment_token"], "--state-dir", str(tmp_path)):
                async def finished(command_id: str) -> dict[str, Any]:
                    async def done() -> dict[str, Any] | None:
                        command = await operator.get(client, hash_, command_id)
                        return command if command["status"] in ("completed", "failed", "cancelled") else None

                    return await eventually(done, deadline=60)  # type: ignore[no-any-return]

                # A quiet container: the probe hears of the time limit when it asks (every 10 s of quiet).
                quiet = (await follow(client, operator, hash_, container=container.id)).json()["command_id"]
                ended = await finished(quiet)
                assert (ended["status"], ended["result"]["ended"]) == ("completed", "time_limit"), ended

                chatty = (await follow(client, operator, hash_, container=chatty_container.id)).json()["command_id"]

                async def executing() -> bool:
                    return (await operator.get(client, hash_, chatty))["status"] == "executing"

                await eventually(executing, deadline=60)
                await trio.to_thread.run_sync(lambda: chatty_container.kill())
                stopped = await finished(chatty)
                assert (stopped["status"], stopped["result"]["ended"]) == ("completed", "container_stopped"), stopped
