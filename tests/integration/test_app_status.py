"""``POST /api/v1/apps/status`` against a real server, as the TryDirect status
agent sends it after each health, logs and restart command: the newest status
of each app is kept, shown on its deployment's GET and told to its users;
bad fields, another deployment's hash, an older status, one app too many and
an unsigned request are each answered as such."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.integration.test_commands import Operator, setup
from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent

pytestmark = pytest.mark.usefixtures("database")  # every test on each store backend (integration/conftest.py)

MAX_APPS = 3


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[ServerProcess]:
    with ServerProcess(["--registrations-per-address", "600", "--max-apps-per-deployment", str(MAX_APPS)]) as process:
        yield process


def rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


async def apps(client: httpx.AsyncClient, operator: Operator, deployment_hash: str) -> list[dict[str, Any]]:
    response = await client.get(operator.url(deployment_hash), headers=operator.auth)
    assert response.status_code == 200, response.text
    return response.json()["apps"]  # type: ignore[no-any-return]


async def next_event(ws: Any, kind: str) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            event = json.loads(await ws.get_message())
            if event["type"] == kind:
                return event  # type: ignore[no-any-return]


async def test_a_status_after_a_health_command_is_kept_shown_on_the_deployment_and_told_to_its_users(
        server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        token = operator.auth["Authorization"].removeprefix("Bearer ")
        url = server.base_url.replace("http://", "ws://") + f"/ws/user/{operator.user_id}?token={token}"
        async with open_websocket_url(url) as ws:
            await next_event(ws, "initial_state")
            # The agent's round: the command, its result, then the app's status.
            created = await operator.command(client, agent.deployment_hash, type="health", parameters={"app_code": "web"})
            polled = await agent.poll(client, timeout=5)
            assert polled is not None and polled.command_id == created["command_id"]
            result = {"type": "health", "status": "ok", "container_state": "running"}
            assert (await agent.report(client, polled.command_id, result=result)).status_code == 200
            seen = time.time() - 5
            response = await agent.update_app_status(client, "web", "running", ["status=ok container_state=running"],
                                                     timestamp=rfc3339(seen))
            assert response.status_code == 200, response.text
            answer = response.json()
            assert (answer["status"], answer["app_code"], answer["logs_kept"], answer["logs_dropped"]) == (
                "ok", "web", 1, 0)

            event = await next_event(ws, "app_status")
            assert event == {"type": "app_status", "deployment_hash": agent.deployment_hash, "app_code": "web",
                             "status": "running", "updated_at": rfc3339(seen).replace("Z", ".000Z")}
        [web] = await apps(client, operator, agent.deployment_hash)
        assert (web["app_code"], web["status"], web["logs"], web["agent_id"], web["updated_at"]) == (
            "web", "running", ["status=ok container_state=running"], agent.agent_id, event["updated_at"])
        assert web["received_at"] >= web["updated_at"]

        # After a logs command: every line it read (400 unless asked); the newest 50 are kept.
        lines = [f"2026-12-06T10:00:{i % 60:02d}Z [stdout] line {i} é" for i in range(400)]
        response = await agent.update_app_status(client, "web", "running", lines)
        assert response.status_code == 200, response.text
        assert (response.json()["logs_kept"], response.json()["logs_dropped"]) == (50, 350)
        [web] = await apps(client, operator, agent.deployment_hash)
        assert web["logs"] == lines[-50:]


async def test_a_bad_field_gets_400_naming_it(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        base = json.loads(agent.app_status_body("web", "running", ["ok"]))
        cases: list[tuple[dict[str, Any], str]] = [
            ({"app_code": "web app!"}, "$.app_code"),
            ({"app_code": ""}, "$.app_code"),
            ({"app_code": "a" * 129}, "$.app_code"),
            ({"app_code": None}, "$.app_code"),
            ({"status": 5}, "$.status"),
            ({"status": "x" * 33}, "$.status"),
            ({"status": "running\n"}, "$.status"),
            ({"logs": "ok"}, "$.logs"),
            ({"logs": ["ok", 7]}, "$.logs[1]"),
            ({"logs": ["x"] * 1001}, "$.logs"),
            ({"timestamp": "yesterday"}, "$.timestamp"),
            ({"timestamp": rfc3339(time.time() + 3600)}, "$.timestamp"),  # would hide every later status
            ({"deployment_hash": 5}, "$.deployment_hash"),
        ]
        for change, path in cases:
            body = json.dumps({**base, **change}).encode()
            response = await agent.update_app_status(client, body=body)
            assert response.status_code == 400, (change, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_app_status" and error["message"].startswith(path), (change, error)
            assert [e["path"] for e in error["details"]["errors"]] == [path], (change, error)
        missing = {k: v for k, v in base.items() if k != "app_code"}
        response = await agent.update_app_status(client, body=json.dumps(missing).encode())
        assert response.status_code == 400 and response.json()["error"]["message"] == "$.app_code: is required"
        assert await apps(client, operator, agent.deployment_hash) == []


async def test_another_deployments_hash_is_refused_403(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        other_operator, other = await setup(server, client)
        response = await agent.update_app_status(client, deployment_hash=other.deployment_hash)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "wrong_deployment"
        assert await apps(client, other_operator, other.deployment_hash) == []
        assert await apps(client, operator, agent.deployment_hash) == []


async def test_an_older_status_is_ignored_and_one_of_the_same_second_kept(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        now = time.time()
        assert (await agent.update_app_status(client, "web", "running", ["up"],
                                              timestamp=rfc3339(now))).status_code == 200
        late = await agent.update_app_status(client, "web", "stopped", ["down"], timestamp=rfc3339(now - 60))
        assert late.status_code == 200, late.text
        assert late.json()["status"] == "ignored" and "newer status" in late.json()["message"]
        [web] = await apps(client, operator, agent.deployment_hash)
        assert (web["status"], web["logs"]) == ("running", ["up"])
        # The agent's times are whole seconds: a restart's status right after a health's is kept.
        again = await agent.update_app_status(client, "web", "error", ["restart failed"], timestamp=rfc3339(now))
        assert again.status_code == 200 and again.json()["status"] == "ok"
        [web] = await apps(client, operator, agent.deployment_hash)
        assert (web["status"], web["logs"]) == ("error", ["restart failed"])


async def test_a_deployment_keeps_at_most_its_limit_of_apps(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        for i in range(MAX_APPS):
            assert (await agent.update_app_status(client, f"app-{i}")).status_code == 200
        response = await agent.update_app_status(client, "one-more")
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "too_many_apps"
        assert error["details"] == {"limit": MAX_APPS, "setting": "commands.max_apps", "app_code": "one-more"}
        # The apps it has still change.
        assert (await agent.update_app_status(client, "app-0", "stopped")).status_code == 200
        shown = await apps(client, operator, agent.deployment_hash)
        assert [(a["app_code"], a["status"]) for a in shown] == [("app-0", "stopped"), ("app-1", "running"),
                                                                 ("app-2", "running")]
        # Another deployment has a limit of its own.
        _, other = await setup(server, client)
        assert (await other.update_app_status(client, "one-more")).status_code == 200


async def test_an_unsigned_status_is_refused_401(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        body = agent.app_status_body("web", "running")
        url = f"{server.base_url}/api/v1/apps/status"
        unsigned = await client.post(url, content=body, headers={"Authorization": f"Bearer {agent.token}",
                                                                  "X-Agent-Id": agent.agent_id})
        assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "missing_signature"
        anonymous = await client.post(url, content=body)
        assert anonymous.status_code == 401, anonymous.text
        forged = {**agent.headers(body), "X-Agent-Signature": agent.headers(b"{}")["X-Agent-Signature"]}
        bad = await client.post(url, content=body, headers=forged)
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_signature"
        assert await apps(client, operator, agent.deployment_hash) == []
