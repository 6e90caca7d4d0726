"""Node details and the control endpoint read a container's controllers once:
the details asked the topology actor (through which every report goes) for the
node's sources once per control its state offers, six times for a running
container (a reviewer, read in the code). What the reader may run is chosen in
memory from one answer, by the same rule the control endpoint applies."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import attrs
import pytest
import trio

from tests.synthetic import container_hex, host_report
from trioscope.actors.topology import GetNodeSources
from trioscope.config import Settings
from trioscope.domain.principals import Role, mint_user_token
from trioscope.domain.topology import container_id, controls_for, node_scope
from trioscope.http import create_app
from trioscope.runtime import ActorRef, open_actor_system
from trioscope.store import token_secret
from trioscope.system import supervision_tree
from trioscope.wire import request_signing

ALLOWED = ("inspect", "logs", "start", "stop")
"""A probe's ``--allow``: of the six controls a running container offers, it runs three."""


@attrs.frozen
class Enrolled:
    client: Any
    owner: dict[str, str]
    """The deployment's owner's Authorization header."""
    node_url: str
    """The node details URL of a running container the agent reported."""
    container: str
    """That container's id, as the agent reported it (its node id carries the tenant's scope besides)."""


@asynccontextmanager
async def enrolled(settings: Settings, capabilities: list[str], version: str) -> AsyncIterator[Enrolled]:
    """A deployment of alice's, an agent enrolled in it with ``capabilities``
    and ``version``, and a report it signed, shown in the topology."""
    secret = token_secret(settings.auth.secret, settings.storage.data_dir)
    token = mint_user_token(secret, user_id="alice", tenant="acme", role=Role.OPERATOR, now=time.time(), ttl=600)
    owner = {"Authorization": f"Bearer {token}"}
    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)
        async with app.test_app() as test_app:
            client = test_app.test_client()
            created = await client.post("/api/v1/users/alice/deployments", json={}, headers=owner)
            assert created.status_code == 201, await created.get_data(as_text=True)
            deployment = await created.get_json()
            registered = await client.post("/api/v1/agent/register", json={
                "deployment_hash": deployment["deployment_hash"], "enrollment_token": deployment["enrollment_token"],
                "capabilities": capabilities, "agent_version": version,
                "system_info": {"os": "Linux"}})
            assert registered.status_code == 201, await registered.get_data(as_text=True)
            agent = await registered.get_json()

            probe = "probe-a"
            report = host_report(0, timestamp=time.time(), containers=2, processes=2, connections=0,
                                 agent_prefix=probe)
            body = json.dumps(report).encode()
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {agent['agent_token']}",
                       "X-Agent-Id": agent["agent_id"]}
            request_signing.sign("POST", "http://localhost/api/v1/reports", headers, body, agent_id=agent["agent_id"],
                                 token=agent["agent_token"], now=time.time(), nonce=str(uuid.uuid4()))
            sent = await client.post("/api/v1/reports", data=body, headers=headers)
            assert sent.status_code == 202, await sent.get_data(as_text=True)

            # An enrolled probe's nodes carry its tenant's scope.
            container = container_hex(f"{probe}-0", 1)
            node_id = container_id(container, node_scope("acme"))
            found = Enrolled(client, owner, f"/api/v1/query/nodes/{quote(node_id, safe='')}", container)
            with trio.fail_after(10):
                while (await client.get(found.node_url)).status_code != 200:
                    await trio.sleep(0.01)
            yield found


@pytest.fixture
def source_asks(monkeypatch: pytest.MonkeyPatch) -> list[GetNodeSources]:
    """The ``GetNodeSources`` asked of any actor from now on."""
    asked: list[GetNodeSources] = []
    ask = ActorRef.ask

    async def counted(self: ActorRef, message: Any, timeout: float | None = 5.0, **options: Any) -> Any:
        if isinstance(message, GetNodeSources):
            asked.append(message)
        return await ask(self, message, timeout=timeout, **options)

    monkeypatch.setattr(ActorRef, "ask", counted)
    return asked


async def test_node_details_ask_for_the_nodes_sources_once(settings: Settings,
                                                           source_asks: list[GetNodeSources]) -> None:
    # An agent that names no docker.<action>: it runs every control (allowed_actions).
    async with enrolled(settings, ["docker", "restart"], "0.2.1") as found:
        source_asks.clear()
        response = await found.client.get(found.node_url, headers=found.owner)
        assert response.status_code == 200
        details = await response.get_json()
        assert len(source_asks) == 1, source_asks
    offered = [c["id"] for c in details["node"]["metadata"]["controls"]]
    assert offered == [c["id"] for c in controls_for("running")]  # six
    assert details["controllable"] is True and details["controls"] == details["node"]["metadata"]["controls"]


async def test_the_control_endpoint_takes_what_the_details_offer(settings: Settings,
                                                                 source_asks: list[GetNodeSources]) -> None:
    async with enrolled(settings, [f"docker.{action}" for action in ALLOWED], "trioscope-probe") as found:
        source_asks.clear()
        details = await (await found.client.get(found.node_url, headers=found.owner)).get_json()
        assert len(source_asks) == 1, source_asks
        shown = [c["id"] for c in details["controls"]]
        assert details["controllable"] is True and shown == ["stop", "logs", "inspect"]
        for action in ("stop", "logs", "inspect"):
            answer = await found.client.post(f"{found.node_url}/controls/{action}", json={}, headers=found.owner)
            assert answer.status_code == 202, await answer.get_json()
        refused = await found.client.post(f"{found.node_url}/controls/restart", json={}, headers=found.owner)
        body = await refused.get_json()
        assert (refused.status_code, body["error"]["code"]) == (403, "control_not_allowed"), body
        assert body["error"]["details"]["allowed"] == sorted(ALLOWED)
        # Run by the agent but not offered in this state: 409, naming those that are.
        refused = await found.client.post(f"{found.node_url}/controls/start", json={}, headers=found.owner)
        body = await refused.get_json()
        assert (refused.status_code, body["error"]["details"]["available"]) == (409, shown), body
        assert len(source_asks) == 1 + 5  # one per control asked for


async def test_a_reader_who_may_not_control_it_is_told_so_with_one_ask(settings: Settings,
                                                                      source_asks: list[GetNodeSources]) -> None:
    secret = token_secret(settings.auth.secret, settings.storage.data_dir)
    other = mint_user_token(secret, user_id="bob", tenant="acme", role=Role.OPERATOR, now=time.time(), ttl=600)
    async with enrolled(settings, ["docker", "restart"], "0.2.1") as found:
        source_asks.clear()
        response = await found.client.get(found.node_url, headers={"Authorization": f"Bearer {other}"})
        details = await response.get_json()
        assert len(source_asks) == 1, source_asks
    assert (details["controllable"], details["controls"]) == (False, [])
