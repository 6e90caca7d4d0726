"""The command service against a real server process: enrollment, the long
poll and results as the TryDirect status agent sends them, ordering, cancel,
confirmation, deadlines, signing, tenants and roles, and the audit log.

Most tests share one server and keep apart by using their own tenant.
"""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import orjson
import pytest
import trio

from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent
from tests.synthetic import container_hex, host_report
from tests.waiting import eventually
from trioscope.domain.commands import parameters_bytes
from trioscope.domain.topology import container_id, node_scope
from trioscope.http._agent_presence import MAX_POLLS_PER_AGENT
from trioscope.store import StoreReader

_ids = itertools.count(1)

pytestmark = pytest.mark.usefixtures("database")  # every test on each store backend (integration/conftest.py)


def fresh(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[ServerProcess]:
    # Every test enrolls agents from 127.0.0.1: more than the default 120 a minute in all.
    with ServerProcess(["--timeout-grace", "0s", "--registrations-per-address", "600"]) as process:
        yield process


@attrs.define
class Operator:
    """A user of one tenant, talking to the user API."""

    server: ServerProcess
    user_id: str
    tenant: str
    role: str = "OPERATOR"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.user_token(self.user_id, self.tenant, self.role)}"}

    def url(self, deployment_hash: str | None = None, rest: str = "") -> str:
        base = f"{self.server.base_url}/api/v1/users/{self.user_id}/deployments"
        return base if deployment_hash is None else f"{base}/{deployment_hash}{rest}"

    async def create_deployment(self, client: httpx.AsyncClient) -> dict[str, Any]:
        response = await client.post(self.url(), json={}, headers=self.auth)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    async def command(self, client: httpx.AsyncClient, deployment_hash: str, **body: Any) -> dict[str, Any]:
        body.setdefault("type", "restart")
        response = await client.post(self.url(deployment_hash, "/commands"), json=body, headers=self.auth)
        assert response.status_code == 202, response.text
        return response.json()  # type: ignore[no-any-return]

    async def get(self, client: httpx.AsyncClient, deployment_hash: str, command_id: str) -> dict[str, Any]:
        response = await client.get(self.url(deployment_hash, f"/commands/{command_id}"), headers=self.auth)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


async def enroll(client: httpx.AsyncClient, server: ServerProcess, operator: Operator) -> StatusAgent:
    deployment = await operator.create_deployment(client)
    response = await client.post(f"{server.base_url}/api/v1/agent/register", json={
        "deployment_hash": deployment["deployment_hash"], "enrollment_token": deployment["enrollment_token"],
        "public_key": "-----BEGIN PUBLIC KEY-----\n...", "capabilities": ["docker", "restart"],
        "system_info": {"os": "linux"}, "agent_version": "0.2.1"})
    assert response.status_code == 201, response.text
    body = response.json()
    for field in ("agent_token", "dashboard_version", "supported_api_versions", "config_endpoint", "agent_id"):
        assert field in body
    return StatusAgent(server.base_url, body["agent_id"], body["agent_token"], deployment["deployment_hash"])


async def setup(server: ServerProcess, client: httpx.AsyncClient, role: str = "OPERATOR") -> tuple[Operator, StatusAgent]:
    operator = Operator(server, fresh("user"), fresh("tenant"), role)
    return operator, await enroll(client, server, operator)


# ---- the protocol, as the status agent speaks it -------------------------------------------

async def test_command_round_trip_with_the_status_agents_requests(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        created = await operator.command(client, agent.deployment_hash, type="restart",
                                         parameters={"app_code": "web", "force": True})
        assert created["status"] == "queued" and created["command_id"].startswith("cmd_")
        assert created["estimated_start"].endswith("Z")

        polled = await agent.poll(client, timeout=5)
        assert polled is not None
        assert (polled.command_id, polled.name, polled.params) == (created["command_id"], "restart",
                                                                    {"app_code": "web", "force": True})
        assert polled.deployment_hash == agent.deployment_hash
        assert (await operator.get(client, agent.deployment_hash, polled.command_id))["status"] == "sent"

        result = {"type": "restart", "status": "ok", "container_state": "running"}
        answer = await agent.report(client, polled.command_id, "success", result=result)
        assert answer.status_code == 200, answer.text
        command = await operator.get(client, agent.deployment_hash, polled.command_id)
        assert command["status"] == "completed" and command["result"] == result
        assert [h["status"] for h in command["history"]] == ["queued", "sent", "completed"]
        assert all(h["at"].endswith("Z") for h in command["history"])

        again = await agent.report(client, polled.command_id, "success", result=result)
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        conflicting = await agent.report(client, polled.command_id, "failed", error="boom")
        assert conflicting.status_code == 409, conflicting.text
        unknown = await agent.report(client, "cmd_does_not_exist", "success")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "command_not_found"


async def test_a_poll_with_nothing_to_do_answers_204_and_limits_its_timeout(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        _, agent = await setup(server, client)
        assert (await agent.wait(client, timeout=1)).status_code == 204
        too_long = await agent.wait(client, timeout=121)
        assert too_long.status_code == 400 and too_long.json()["error"]["details"]["field"] == "timeout"


async def test_failed_progress_and_cancelled_reports(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        first = await operator.command(client, agent.deployment_hash)
        polled = await agent.poll(client, timeout=5)
        assert polled is not None and polled.command_id == first["command_id"]
        progress = agent.report_body(polled.command_id, "executing").replace(b'"status":"executing"',
                                                                               b'"progress":40,"stage":"pulling","status":"executing"')
        assert (await agent.report(client, polled.command_id, body=progress)).status_code == 200
        command = await operator.get(client, agent.deployment_hash, polled.command_id)
        assert command["status"] == "executing" and command["progress"] == {"percent": 40.0, "stage": "pulling"}
        assert (await agent.report(client, polled.command_id, "failed", error="no such container")).status_code == 200
        command = await operator.get(client, agent.deployment_hash, polled.command_id)
        assert (command["status"], command["error"]) == ("failed", "no such container")


async def test_the_status_agents_error_and_timeout_reports_fail_the_command_with_its_error(
        server: ServerProcess) -> None:
    """The status agent reports ``error`` when a step of a command fails
    (configure_proxy, probe_endpoints) and does not resend a report refused
    with a 4xx: refused, its error was lost and the command timed out."""
    cases = [("error", {"error": "NPM authentication failed"}, "NPM authentication failed"),
             ("error", {"errors": [{"code": "npm_auth", "message": "NPM authentication failed"}]},
              [{"code": "npm_auth", "message": "NPM authentication failed"}]),
             ("timeout", {}, "timed out"),
             # Both, as fetch_config's Vault failure sends them: the message is the error, the
             # structured errors (dropped before) are kept in the result.
             ("error", {"error": "Failed to initialize Vault client",
                        "errors": [{"code": "vault_init_failed", "details": "connection refused"}]},
              "Failed to initialize Vault client")]
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)  # one agent: registrations have a budget per address
        for status, extra, error in cases:
            created = await operator.command(client, agent.deployment_hash)
            polled = await agent.poll(client, timeout=5)
            assert polled is not None and polled.command_id == created["command_id"]
            body = {**json.loads(agent.report_body(polled.command_id, status)), **extra}
            response = await agent.report(client, polled.command_id,
                                          body=json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
            assert response.status_code == 200, response.text
            command = await operator.get(client, agent.deployment_hash, polled.command_id)
            assert (command["status"], command["error"]) == ("failed", error)
            if "error" in extra and "errors" in extra:
                assert command["result"] == {"errors": extra["errors"]}, command


async def test_bad_reports_get_400_naming_the_field(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        _, agent = await setup(server, client)
        body = b'{"command_id":5,"deployment_hash":"' + agent.deployment_hash.encode() + b'","status":"done"}'
        response = await agent.report(client, "x", body=body)
        assert response.status_code == 400
        paths = {e["path"] for e in response.json()["error"]["details"]["errors"]}
        assert paths == {"$.command_id", "$.status"}


# ---- credentials ----------------------------------------------------------------------------

async def test_agent_credentials_are_checked(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        _, other = await setup(server, client)
        bad_token = attrs.evolve(agent, token="not-a-token")
        assert (await bad_token.wait(client, timeout=1)).status_code == 401
        foreign = attrs.evolve(other, deployment_hash=agent.deployment_hash)
        response = await foreign.wait(client, timeout=1)
        assert response.status_code == 403 and response.json()["error"]["code"] == "wrong_deployment"
        wrong_id = attrs.evolve(agent, agent_id=other.agent_id)
        assert (await wrong_id.wait(client, timeout=1)).status_code == 401

        admin = attrs.evolve(operator, role="ADMIN")
        response = await client.post(admin.url(agent.deployment_hash, f"/agents/{agent.agent_id}/decommission"),
                                     headers=admin.auth)
        assert response.status_code == 200, response.text
        gone = await agent.wait(client, timeout=1)
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "agent_decommissioned"


async def _hold_poll(client: httpx.AsyncClient, server: ServerProcess, agent: StatusAgent,
                     nursery: trio.Nursery) -> list[httpx.Response]:
    """Start a 60 s poll of ``agent`` and return once the server holds it; the
    list gets its response."""
    answered: list[httpx.Response] = []
    before = await _polls_waiting(server)

    async def hold() -> None:
        answered.append(await agent.wait(client, timeout=60))

    nursery.start_soon(hold)
    await eventually(lambda: _more_polls_than(server, before), deadline=10)
    return answered


async def _more_polls_than(server: ServerProcess, count: float) -> bool:
    return await _polls_waiting(server) > count


async def _answered(answered: list[httpx.Response]) -> bool:
    return bool(answered)


async def test_a_decommissioned_agents_held_poll_ends_with_410_and_gets_no_later_command(
        server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        admin = attrs.evolve(operator, role="ADMIN")
        async with trio.open_nursery() as nursery:
            held = await _hold_poll(client, server, agent, nursery)
            response = await client.post(admin.url(agent.deployment_hash, f"/agents/{agent.agent_id}/decommission"),
                                         headers=admin.auth)
            assert response.status_code == 200, response.text
            later = await operator.command(client, agent.deployment_hash)
            await eventually(lambda: _answered(held), deadline=10)  # well before the poll's 60 s
        assert held[0].status_code == 410, held[0].text
        assert held[0].json()["error"]["code"] == "agent_decommissioned"
        assert (await operator.get(client, agent.deployment_hash, later["command_id"]))["status"] == "queued"


async def test_a_replaced_agents_held_poll_ends_and_the_new_agent_gets_the_command(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, old = await setup(server, client)
        async with trio.open_nursery() as nursery:
            held = await _hold_poll(client, server, old, nursery)
            token = await client.post(operator.url(old.deployment_hash, "/enrollment"), headers=operator.auth)
            assert token.status_code == 201, token.text
            registered = await client.post(f"{server.base_url}/api/v1/agent/register", json={
                "deployment_hash": old.deployment_hash, "enrollment_token": token.json()["enrollment_token"]})
            assert registered.status_code == 201, registered.text
            new = attrs.evolve(old, agent_id=registered.json()["agent_id"], token=registered.json()["agent_token"])
            await eventually(lambda: _answered(held), deadline=10)  # well before the poll's 60 s
            created = await operator.command(client, old.deployment_hash)
        fresh_request = await old.wait(client, timeout=1)
        # The held poll ends as a new request with the replaced credentials does.
        assert held[0].status_code == fresh_request.status_code and held[0].status_code in (401, 410), held[0].text
        assert held[0].json()["error"]["code"] == fresh_request.json()["error"]["code"]
        polled = await new.poll(client, timeout=5)
        assert polled is not None and polled.command_id == created["command_id"]


@pytest.mark.parametrize("retire", ["replace", "decommission"])
async def test_a_command_its_agent_had_ends_when_the_agent_is_retired(server: ServerProcess, retire: str) -> None:
    """A command delivered to an agent that is then replaced (the deployment
    enrolled again) or decommissioned: its reports are refused (410), no other
    agent may report on it (409), and a cancel went to the new agent as a
    notice for a command it never had. It stayed ``sent`` until its timeout (a
    week here), a place of the open-commands quota. It fails at once now,
    saying why, and a cancel finds it ended."""
    async with httpx.AsyncClient() as client:
        operator, old = await setup(server, client)
        created = await operator.command(client, old.deployment_hash, timeout_seconds=604_800)
        assert (await old.poll(client, timeout=5)) is not None
        if retire == "replace":
            token = await client.post(operator.url(old.deployment_hash, "/enrollment"), headers=operator.auth)
            assert token.status_code == 201, token.text
            registered = await client.post(f"{server.base_url}/api/v1/agent/register", json={
                "deployment_hash": old.deployment_hash, "enrollment_token": token.json()["enrollment_token"]})
            assert registered.status_code == 201, registered.text
        else:
            admin = attrs.evolve(operator, role="ADMIN")
            response = await client.post(admin.url(old.deployment_hash, f"/agents/{old.agent_id}/decommission"),
                                         headers=admin.auth)
            assert response.status_code == 200, response.text

        async def ended() -> dict[str, Any] | None:
            command = await operator.get(client, old.deployment_hash, created["command_id"])
            return command if command["status"] == "failed" else None

        command = await eventually(ended, deadline=10)
        assert "retired" not in command["error"] and "decommissioned or replaced" in command["error"]
        cancel = await client.post(operator.url(old.deployment_hash, f"/commands/{created['command_id']}/cancel"),
                                   headers=operator.auth)
        assert cancel.status_code == 409, cancel.text


async def _polls_at_most(server: ServerProcess, count: float) -> bool:
    return await _polls_waiting(server) <= count


async def test_a_poll_whose_client_goes_away_ends_at_once_and_the_next_poll_gets_the_command(
        server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        before = await _polls_waiting(server)
        async with httpx.AsyncClient() as leaving, trio.open_nursery() as nursery:
            await _hold_poll(leaving, server, agent, nursery)
            nursery.cancel_scope.cancel()  # the agent's request is abandoned: its connection closes
        # The server notices the closed connection and stops holding the poll, well before its 60 s.
        await eventually(lambda: _polls_at_most(server, before), deadline=10)
        created = await operator.command(client, agent.deployment_hash)
        polled = await agent.poll(client, timeout=5)
        assert polled is not None and polled.command_id == created["command_id"]


async def test_signatures_replays_and_clock_skew_are_refused(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        _, agent = await setup(server, client)
        request_id = "0b0b7a2e-3c3f-4c55-9d2a-6f7e1e0c7a11"
        assert (await agent.wait(client, timeout=1, **{"X-Request-Id": request_id})).status_code == 204
        replay = await agent.wait(client, timeout=1, **{"X-Request-Id": request_id})
        assert replay.status_code == 401 and replay.json()["error"]["code"] == "replayed_request"
        skewed = await agent.wait(client, timeout=1, **{"X-Timestamp": str(int(time.time()) - 301)})
        assert skewed.status_code == 401 and skewed.json()["error"]["code"] == "clock_skew"
        forged = await agent.wait(client, timeout=1, **{"X-Agent-Signature": "A" * 43 + "="})
        assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_signature"
        unsigned = await agent.wait(client, timeout=1, **{"X-Agent-Signature": ""})
        assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "missing_signature"
        body = agent.report_body("cmd_x", "success")
        tampered = await agent.report(client, "cmd_x", body=body, **{"X-Agent-Signature": agent.headers(body + b" ")["X-Agent-Signature"]})
        assert tampered.status_code == 401 and tampered.json()["error"]["code"] == "invalid_signature"


async def test_enrollment_tokens_work_once(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator = Operator(server, fresh("user"), fresh("tenant"))
        deployment = await operator.create_deployment(client)
        register = {"deployment_hash": deployment["deployment_hash"],
                    "enrollment_token": deployment["enrollment_token"], "capabilities": []}
        url = f"{server.base_url}/api/v1/agent/register"
        assert (await client.post(url, json=register)).status_code == 201
        again = await client.post(url, json=register)
        assert again.status_code == 401 and again.json()["error"]["code"] == "invalid_enrollment_token"
        missing = await client.post(url, json={"deployment_hash": deployment["deployment_hash"]})
        assert missing.status_code == 401
        fresh_token = await client.post(operator.url(deployment["deployment_hash"], "/enrollment"), headers=operator.auth)
        assert fresh_token.status_code == 201
        register["enrollment_token"] = fresh_token.json()["enrollment_token"]
        assert (await client.post(url, json=register)).status_code == 201


# ---- delivery semantics ---------------------------------------------------------------------

async def test_priority_order_then_fifo(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        order = ["low", "normal", "critical", "high", "normal", "critical"]
        ids = [(await operator.command(client, agent.deployment_hash, priority=p))["command_id"] for p in order]
        got = []
        for _ in order:
            polled = await agent.poll(client, timeout=5)
            assert polled is not None
            got.append(polled.command_id)
        expected = [ids[2], ids[5], ids[3], ids[1], ids[4], ids[0]]
        assert got == expected


async def test_concurrent_polls_never_share_a_command(server: ServerProcess) -> None:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as client:
        operator, agent = await setup(server, client)
        received: list[str] = []

        async def poll_once() -> None:
            polled = await agent.poll(client, timeout=30)
            if polled is not None:
                received.append(polled.command_id)

        async def all_received() -> bool:
            return len(received) >= 20

        created = []
        before = await _polls_waiting(server)
        async with trio.open_nursery() as nursery:
            for _ in range(30):
                nursery.start_soon(poll_once)
            await eventually(lambda: _more_polls_than(server, before + 29))  # all 30 held: the race is on
            for _ in range(20):
                created.append((await operator.command(client, agent.deployment_hash))["command_id"])
            await eventually(all_received)
            nursery.cancel_scope.cancel()  # the ten polls left waiting
        assert sorted(received) == sorted(created)  # each exactly once, none lost


async def test_confirmation_and_schedule_hold_commands_back(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        held = await operator.command(client, agent.deployment_hash, requires_confirmation=True)
        assert held["status"] == "awaiting_confirmation"
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        scheduled = await operator.command(client, agent.deployment_hash, schedule_at=later)
        assert scheduled["estimated_start"] == later.replace("Z", ".000Z")
        assert (await agent.wait(client, timeout=1)).status_code == 204
        confirm = await client.post(operator.url(agent.deployment_hash, f"/commands/{held['command_id']}/confirm"),
                                    headers=operator.auth)
        assert confirm.status_code == 200 and confirm.json()["status"] == "queued"
        polled = await agent.poll(client, timeout=5)
        assert polled is not None and polled.command_id == held["command_id"]


async def test_cancel_queued_then_with_the_agent_then_finished(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        queued = await operator.command(client, agent.deployment_hash)
        cancel = await client.post(operator.url(agent.deployment_hash, f"/commands/{queued['command_id']}/cancel"),
                                   headers=operator.auth)
        assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
        again = await client.post(operator.url(agent.deployment_hash, f"/commands/{queued['command_id']}/cancel"),
                                  headers=operator.auth)
        assert again.status_code == 409

        sent = await operator.command(client, agent.deployment_hash)
        polled = await agent.poll(client, timeout=5)
        assert polled is not None and polled.command_id == sent["command_id"]
        unasked = await agent.report(client, sent["command_id"], "cancelled")
        assert unasked.status_code == 409 and "not asked to cancel" in unasked.json()["error"]["message"]
        cancel = await client.post(operator.url(agent.deployment_hash, f"/commands/{sent['command_id']}/cancel"),
                                   headers=operator.auth)
        assert cancel.status_code == 200 and cancel.json()["metadata"]["cancel_requested"]
        notice = await agent.poll(client, timeout=5)
        assert notice is not None and notice.name == "cancel" and notice.params == {"command_id": sent["command_id"]}
        assert (await agent.report(client, notice.command_id, "failed", error="unknown command")).status_code == 200
        assert (await agent.report(client, sent["command_id"], "cancelled")).status_code == 200
        assert (await operator.get(client, agent.deployment_hash, sent["command_id"]))["status"] == "cancelled"


async def test_a_command_the_agent_never_finishes_times_out(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        created = await operator.command(client, agent.deployment_hash, timeout_seconds=1)
        assert await agent.poll(client, timeout=5) is not None

        async def failed() -> dict[str, Any] | None:
            command = await operator.get(client, agent.deployment_hash, created["command_id"])
            return command if command["status"] == "failed" else None

        command = await eventually(failed)
        assert command["error"] == "timed out"
        late = await agent.report(client, created["command_id"], "success")  # recorded beside the time-out
        assert late.status_code == 200 and late.json()["item"]["command_status"] == "failed", late.text
        other = await agent.report(client, created["command_id"], "failed", error="exit 1")
        assert other.status_code == 409, other.text


async def test_commands_are_listed_with_filters(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        ids = [(await operator.command(client, agent.deployment_hash))["command_id"] for _ in range(3)]
        listing = await client.get(operator.url(agent.deployment_hash, "/commands"),
                                   params={"status": "queued", "limit": 2}, headers=operator.auth)
        assert listing.status_code == 200
        body = listing.json()
        assert [c["command_id"] for c in body["commands"]] == [ids[2], ids[1]] and body["total"] == 3
        for bad in ({"limit": 501}, {"status": "done"}, {"from_date": "yesterday"}):
            response = await client.get(operator.url(agent.deployment_hash, "/commands"), params=bad,
                                        headers=operator.auth)
            assert response.status_code == 400 and response.json()["error"]["details"]["field"] == next(iter(bad))
        early = await client.get(operator.url(agent.deployment_hash, "/commands"),
                                 params={"from_date": "0001-01-01T00:00:00Z"}, headers=operator.auth)
        assert early.status_code == 400 and "must not be before 1970-01-01" in early.json()["error"]["message"]


async def test_bad_commands_get_400_naming_every_field(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        response = await client.post(operator.url(agent.deployment_hash, "/commands"), headers=operator.auth,
                                     json={"type": "", "priority": "urgent", "timeout_seconds": "5",
                                           "parameters": {"blob": "x" * 70_000}})
        assert response.status_code == 400
        paths = {e["path"] for e in response.json()["error"]["details"]["errors"]}
        assert paths == {"$.type", "$.priority", "$.timeout_seconds"}
        big = await client.post(operator.url(agent.deployment_hash, "/commands"), headers=operator.auth,
                                json={"type": "x", "parameters": {"blob": "x" * 70_000}})
        assert big.status_code == 400 and "$.parameters" in big.json()["error"]["message"]


async def test_bodies_small_by_nature_are_refused_413_before_they_are_read(server: ServerProcess) -> None:
    """A body far beyond what its endpoint takes is not parsed and checked
    first (an 8.6 MB registration of small objects held every request up for
    0.6 s, without credentials): 413, naming the endpoint's limit."""
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        big = b'{"pad": "' + b"x" * 600_000 + b'"}'
        for url, headers, limit in (
            (f"{server.base_url}/api/v1/agent/register", {}, 128 * 1024),
            (f"{server.base_url}/api/v1/agents/register", {}, 512 * 1024),
            (f"{server.base_url}/api/v1/agents/heartbeat/{fresh('probe')}", {}, 64 * 1024),
            (operator.url(), operator.auth, 64 * 1024),
            (operator.url(agent.deployment_hash, "/commands"), operator.auth, 256 * 1024),
            (f"{server.base_url}/api/v1/query/nodes/container:abc/controls/restart", operator.auth, 64 * 1024),
        ):
            response = await client.post(url, content=big, headers={**headers, "Content-Type": "application/json"})
            assert response.status_code == 413, (url, response.text)
            assert response.json()["error"]["details"]["limit_bytes"] == limit, url


async def test_bodies_that_are_no_object_and_far_schedules_and_bad_user_ids_get_400(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        for body in (b"[]", b"0", b"false", b'""', b"null"):
            response = await client.post(operator.url(), content=body, headers={**operator.auth,
                                                                                 "Content-Type": "application/json"})
            assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_body"), body
            assert response.json()["error"]["message"].startswith("$: must be a JSON object")
        far = await client.post(operator.url(agent.deployment_hash, "/commands"), headers=operator.auth,
                                json={"type": "restart", "schedule_at": "9999-12-31T23:59:59Z"})
        assert far.status_code == 400 and far.json()["error"]["message"].startswith("$.schedule_at: must be at most")
        admin = Operator(server, fresh("admin"), operator.tenant, "ADMIN")
        for user_id, says in (("u" * 129, "must be 1-128 characters"), ("%E2%98%83%01", "no control characters"),
                              ("a%0Ab", "no control characters")):
            response = await client.post(f"{server.base_url}/api/v1/users/{user_id}/deployments", json={},
                                         headers=admin.auth)
            assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_user_id"), user_id
            assert says in response.json()["error"]["message"]
            assert len(response.text) < 1000  # a long id is not echoed whole


# ---- tenants, roles, audit --------------------------------------------------------------------

USER_ROUTES = [
    ("GET", ""), ("GET", "/commands"), ("POST", "/commands"), ("GET", "/commands/{command}"),
    ("POST", "/commands/{command}/confirm"), ("POST", "/commands/{command}/cancel"), ("POST", "/enrollment"),
    ("POST", "/agents/{agent}/decommission"),
]


async def test_another_tenant_sees_nothing_on_any_route(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        owner, agent = await setup(server, client)
        command = await owner.command(client, agent.deployment_hash, requires_confirmation=True)
        intruder = Operator(server, owner.user_id, fresh("tenant"), "ADMIN")  # same user name, other tenant
        for method, rest in USER_ROUTES:
            path = rest.format(command=command["command_id"], agent=agent.agent_id)
            response = await client.request(method, intruder.url(agent.deployment_hash, path),
                                            json={"type": "restart"} if method == "POST" else None,
                                            headers=intruder.auth)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "deployment_not_found"
        listing = await client.get(intruder.url(), headers=intruder.auth)
        assert listing.json()["count"] == 0
        # Nothing was changed by any of it.
        assert (await owner.get(client, agent.deployment_hash, command["command_id"]))["status"] == "awaiting_confirmation"


async def test_roles(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        owner, agent = await setup(server, client)
        viewer = attrs.evolve(owner, role="VIEWER")
        assert (await client.get(viewer.url(agent.deployment_hash, "/commands"), headers=viewer.auth)).status_code == 200
        denied = await client.post(viewer.url(agent.deployment_hash, "/commands"), json={"type": "x"}, headers=viewer.auth)
        assert denied.status_code == 403
        assert (await client.get(f"{server.base_url}/api/v1/audit", headers=owner.auth)).status_code == 403
        assert (await client.get(f"{server.base_url}/api/v1/runtime", headers=owner.auth)).status_code == 403
        admin = attrs.evolve(owner, role="ADMIN")
        assert (await client.get(f"{server.base_url}/api/v1/runtime", headers=admin.auth)).status_code == 200
        other_user = Operator(server, fresh("user"), owner.tenant, "OPERATOR")
        foreign = await client.get(other_user.url(agent.deployment_hash), headers=other_user.auth)
        assert foreign.status_code == 404
        for headers in ({}, {"Authorization": "Bearer nonsense"},
                        {"Authorization": f"Bearer {server.user_token(ttl=10, issued_ago=60)}"}):
            assert (await client.get(owner.url(), headers=headers)).status_code == 401


async def test_users_me_says_who_a_token_is_and_what_its_role_may_do(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        url = f"{server.base_url}/api/v1/users/me"
        for role, permissions in (("VIEWER", ["read"]), ("OPERATOR", ["read", "operate"]),
                                  ("ADMIN", ["read", "operate", "administer"])):
            answer = await client.get(url, headers=Operator(server, "u1", "t1", role).auth)
            assert answer.status_code == 200, answer.text
            me = answer.json()
            assert (me["user_id"], me["tenant"], me["role"], me["permissions"]) == ("u1", "t1", role, permissions)
            assert me["expires_at"].endswith("Z")
        refused = await client.get(url, headers={"Authorization": "Bearer nonsense"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"


async def reported_container(client: httpx.AsyncClient, server: ServerProcess, owner: Operator,
                             agent: StatusAgent) -> str:
    """The node id of a container a probe of ``agent``'s deployment reported, once the topology shows it."""
    probe = fresh("probe")
    # The probe signs with the deployment agent's credentials: that is what
    # attaches its containers to the deployment.
    registered = await agent.signed_post(client, "/api/v1/agents/register", {
        "agent_id": f"{probe}-0", "hostname": probe, "metadata": {"deployment_hash": agent.deployment_hash}})
    assert registered.status_code == 201, registered.text
    report = host_report(0, timestamp=time.time(), containers=2, processes=2, connections=0, agent_prefix=probe)
    report["hostname"] = report["host_info"]["hostname"] = probe
    assert (await agent.signed_post(client, "/api/v1/reports", report)).status_code == 202
    node_id = container_id(container_hex(f"{probe}-0", 1), node_scope(owner.tenant))

    async def shown() -> bool:
        return (await client.get(f"{server.base_url}/api/v1/query/nodes/{node_id}")).status_code == 200

    await eventually(shown)
    return node_id


async def test_container_controls_are_for_the_deployments_owner_and_the_tenants_admins(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        owner, agent = await setup(server, client)
        node_id = await reported_container(client, server, owner, agent)
        url = f"{server.base_url}/api/v1/query/nodes/{node_id}/controls/restart"
        colleague = Operator(server, fresh("user"), owner.tenant, "OPERATOR")
        stranger = Operator(server, owner.user_id, fresh("tenant"), "ADMIN")
        for other in (colleague, stranger):
            refused = await client.post(url, json={}, headers=other.auth)
            assert refused.status_code == 404 and refused.json()["error"]["code"] == "node_not_found"
        for allowed in (owner, Operator(server, fresh("admin"), owner.tenant, "ADMIN")):
            created = await client.post(url, json={}, headers=allowed.auth)
            assert created.status_code == 202, created.text
            assert created.json()["type"] == "docker.restart" and created.json()["user_id"] == owner.user_id
        for body, path in (({"parameters": [1, 2]}, "$.parameters"), ({"parameters": "x"}, "$.parameters"),
                           ([], "$"), (0, "$")):
            refused = await client.post(url, json=body, headers=owner.auth)
            assert (refused.status_code, refused.json()["error"]["code"]) == (400, "invalid_body"), body
            assert refused.json()["error"]["message"].startswith(f"{path}: must be a JSON object")


async def test_audit_log_records_who_did_what_from_where(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        created = await operator.command(client, agent.deployment_hash)
        await client.post(operator.url(agent.deployment_hash, f"/commands/{created['command_id']}/cancel"),
                          headers=operator.auth)
        # Refused with a valid token (so the agent is known): in the tenant's log.
        await agent.wait(client, timeout=1, **{"X-Agent-Signature": "A" * 44})
        admin = attrs.evolve(operator, role="ADMIN")

        async def entries() -> list[dict[str, Any]] | None:
            response = await client.get(f"{server.base_url}/api/v1/audit", headers=admin.auth)
            assert response.status_code == 200
            found = response.json()["entries"]
            return found if any(e["action"] == "auth.failure" for e in found) else None

        found = await eventually(entries)
        actions = {e["action"] for e in found}
        assert {"deployment.create", "agent.register", "command.create", "command.cancel", "auth.failure"} <= actions
        create = next(e for e in found if e["action"] == "command.create")
        assert create["actor"] == f"user:{operator.user_id}" and create["resource_id"] == created["command_id"]
        assert create["address"] == "127.0.0.1" and create["at"].endswith("Z")
        filtered = await client.get(f"{server.base_url}/api/v1/audit", params={"action": "command.cancel"},
                                    headers=admin.auth)
        assert [e["action"] for e in filtered.json()["entries"]] == ["command.cancel"]
        # How a delivered command ended (the seed's command.execute; it was missing): its agent's outcome.
        ran = await operator.command(client, agent.deployment_hash)
        assert await agent.poll(client, timeout=5) is not None
        assert (await agent.report(client, ran["command_id"], "failed", error="no such app")).status_code == 200
        executed = await client.get(f"{server.base_url}/api/v1/audit", params={"action": "command.execute"},
                                    headers=admin.auth)
        (entry,) = executed.json()["entries"]
        assert (entry["actor"], entry["resource_id"], entry["outcome"]) == (
            f"agent:{agent.agent_id}", ran["command_id"], "failed")


async def test_tenant_quota_on_deployments() -> None:
    with ServerProcess(["--max-deployments", "2"]) as server:
        async with httpx.AsyncClient() as client:
            operator = Operator(server, "u", "small")
            for _ in range(2):
                await operator.create_deployment(client)
            response = await client.post(operator.url(), json={}, headers=operator.auth)
            assert response.status_code == 403 and response.json()["error"]["code"] == "quota_exceeded"


async def test_open_commands_per_deployment_are_limited() -> None:
    with ServerProcess(["--max-queued-commands", "2"]) as server:
        async with httpx.AsyncClient() as client:
            operator, agent = await setup(server, client)
            for _ in range(2):
                await operator.command(client, agent.deployment_hash)
            response = await client.post(operator.url(agent.deployment_hash, "/commands"), json={"type": "x"},
                                         headers=operator.auth)
            assert response.status_code == 403
            assert response.json()["error"]["details"]["setting"] == "commands.max_queued"


async def test_rate_limits_per_address_user_and_agent_answer_429_with_retry_after() -> None:
    # 60 a minute: a burst of 10, then one every second.
    limits = ["--rate-per-user", "60", "--rate-per-agent", "60"]
    with ServerProcess(limits) as server:
        async with httpx.AsyncClient() as client:
            operator, agent = await setup(server, client)
            statuses = [(await client.get(operator.url(), headers=operator.auth)) for _ in range(20)]
            limited = [r for r in statuses if r.status_code == 429]
            assert limited and int(limited[0].headers["Retry-After"]) >= 1
            assert limited[0].json()["error"]["details"]["scope"] == "user"
            reports = [await agent.report(client, "cmd_unknown") for _ in range(20)]
            assert {r.status_code for r in reports} == {404, 503}  # reports 503: see test_an_agents_bytes_...
            limited = next(r for r in reports if r.status_code == 503)
            assert limited.json()["error"]["details"]["scope"] == "agent" and int(limited.headers["Retry-After"]) >= 1
    with ServerProcess(["--rate-per-address", "60"]) as server:
        async with httpx.AsyncClient() as client:
            anonymous = [await client.post(f"{server.base_url}/api/v1/agent/register", json={}) for _ in range(20)]
            assert {r.status_code for r in anonymous} == {400, 429}
            assert next(r for r in anonymous if r.status_code == 429).json()["error"]["details"]["scope"] == "address"
    with ServerProcess(["--rate-per-address", "60"]) as server:
        async with httpx.AsyncClient() as client:
            # Agents behind one address spend its budget together: a result over it is 503 too (the
            # status agent sends it again after a 5xx; a 429 lost it), a poll still 429.
            _, agent = await setup(server, client)
            reports = [await agent.report(client, "cmd_unknown") for _ in range(20)]
            limited = next(r for r in reports if r.status_code not in (404,))
            assert limited.status_code == 503 and limited.json()["error"]["details"]["scope"] == "address", limited.text
            assert int(limited.headers["Retry-After"]) >= 1
            assert (await agent.wait(client, timeout=1)).status_code == 429


async def test_an_agents_bytes_have_a_budget_of_their_own_over_http_and_on_its_socket() -> None:
    """1 MiB a minute, 512 KiB at once, counted in 64 KiB steps (a socket's
    message before it is read, pings too): one agent's 750 KB messages within
    its requests a minute held every other client's requests up by ~230 ms each."""
    limits = ["--agent-bytes-per-minute", "1MiB"]
    with ServerProcess(limits) as server:
        async with httpx.AsyncClient() as client:
            _, agent = await setup(server, client)
            result = {"lines": ["x" * 1000] * 400}  # ~400 KB: 7 of the 8 steps at once
            reports = [await agent.report(client, "cmd_unknown", result=result) for _ in range(2)]
            # A report is refused 503, not 429: the status agent sends one again only after a 5xx.
            assert [r.status_code for r in reports] == [404, 503], [r.text[:200] for r in reports]
            assert reports[1].json()["error"]["details"] == {"limit_bytes_per_minute": 1024**2, "scope": "agent_bytes"}
            assert reports[1].json()["error"]["code"] == "rate_limited" and int(reports[1].headers["Retry-After"]) >= 1
            assert (await agent.wait(client, timeout=1)).status_code == 204  # a poll has no body to count
    with ServerProcess(limits) as server:
        async with httpx.AsyncClient() as client:
            _, agent = await setup(server, client)
            async with agent.socket() as ws:
                answers = []
                for pad in (400_000, 0, 200_000, 0):  # 7 steps, 1, then 4 and 1 of none left
                    await ws.ws.send_message(json.dumps({"type": "ping", "pad": "x" * pad}))
                    answer = json.loads(await ws.ws.get_message())
                    answers.append(answer["type"] if answer["type"] == "pong" else answer["error"])
                assert answers[:2] == ["pong", "pong"], answers
                # Refused, with when to come back; the socket is read again after a pause (READ_PAUSE).
                refusals = answers[2:]
                assert [a["status"] for a in refusals] == [429, 429], answers
                assert all(a["retry_after"] >= 1 for a in refusals), answers


async def test_a_large_result_is_refused_while_the_disk_is_short_of_room_and_a_small_one_is_kept(database: str) -> None:
    """Agents' results filled the disk at their byte budgets (two agents ~190 MiB
    a minute, kept 30 days), and SQLite on a full disk ends the server. Below
    ``--min-free-bytes`` (here more than any disk has) a large result is
    refused 507, which the status agent sends again later; small ones go on.
    PostgreSQL's disk is the database server's: not watched."""
    with ServerProcess(["--min-free-bytes", "1000TiB"]) as server:
        async with httpx.AsyncClient() as client:
            operator, agent = await setup(server, client)
            created = await operator.command(client, agent.deployment_hash)
            assert await agent.poll(client, timeout=5) is not None
            large = await agent.report(client, created["command_id"], result={"output": "x" * 100_000})
            if database == "postgresql":
                assert large.status_code == 200, large.text
                return
            assert large.status_code == 507, large.text
            assert large.json()["error"]["code"] == "insufficient_storage" and large.headers["Retry-After"] == "60"
            # The same over the agent's socket (it went around the check) ...
            async with agent.socket() as ws:
                ack = await ws.report(agent.report_body(created["command_id"], "success",
                                                        result={"output": "x" * 100_000}))
                assert ack["status"] == "rejected" and ack["error"]["status"] == 507, ack
                assert ack["error"]["code"] == "insufficient_storage", ack
            # ... and a command of large parameters (one user's creates and cancels filled a disk).
            refused = await client.post(operator.url(agent.deployment_hash, "/commands"), headers=operator.auth,
                                        json={"type": "restart", "parameters": {"script": "x" * 60_000}})
            assert (refused.status_code, refused.json()["error"]["code"]) == (507, "insufficient_storage")
            assert (await operator.command(client, agent.deployment_hash))["status"] == "queued"  # a small one
            small = await agent.report(client, created["command_id"], result={"output": "done"})
            assert small.status_code == 200, small.text
            assert (await operator.get(client, agent.deployment_hash, created["command_id"]))["result"] == {
                "output": "done"}
        assert "less than storage.min_free_bytes (1000TiB)" in server.stderr()  # its units, not "0 MiB"


async def test_a_deployment_shows_its_agents_and_when_they_were_last_seen(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        await agent.wait(client, timeout=1)
        response = await client.get(operator.url(agent.deployment_hash), headers=operator.auth)
        assert response.status_code == 200
        (shown,) = response.json()["agents"]
        assert (shown["agent_id"], shown["status"], shown["enrollment_status"]) == (agent.agent_id, "online", "active")
        assert shown["capabilities"] == ["docker", "restart"] and shown["last_seen"].endswith("Z")


async def test_an_agents_newest_poll_ends_its_oldest_beyond_the_most_it_holds(server: ServerProcess) -> None:
    """One agent's budget held ~1,260 polls at once: one beyond ``MAX_POLLS_PER_AGENT``
    ends the oldest (204 at once, as if nothing came), so an agent that reconnects is never refused."""
    async with httpx.AsyncClient(timeout=90, limits=httpx.Limits(max_connections=MAX_POLLS_PER_AGENT + 1)) as client:
        _, agent = await setup(server, client)
        before = await _polls_waiting(server)
        answers: list[tuple[int, int]] = []

        async def hold(n: int) -> None:
            answers.append((n, (await agent.wait(client, timeout=60)).status_code))

        async with trio.open_nursery() as nursery:
            for n in range(MAX_POLLS_PER_AGENT + 1):
                nursery.start_soon(hold, n)
                if n < MAX_POLLS_PER_AGENT:  # each held before the next: the first is the oldest
                    with trio.fail_after(10):
                        while await _polls_waiting(server) < before + n + 1:
                            await trio.sleep(0.02)
            with trio.fail_after(10):
                while not answers:
                    await trio.sleep(0.05)
            assert answers == [(0, 204)]
            assert await _polls_waiting(server) == before + MAX_POLLS_PER_AGENT
            nursery.cancel_scope.cancel()


async def test_stopping_the_server_answers_waiting_polls_and_exits_cleanly() -> None:
    with ServerProcess() as server:
        async with httpx.AsyncClient() as client:
            _, agent = await setup(server, client)
            answers: list[int] = []

            async def hold() -> None:
                answers.append((await agent.wait(client, timeout=120)).status_code)

            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(hold)
                with trio.fail_after(10):
                    while await _polls_waiting(server) < 3:
                        await trio.sleep(0.05)
                server.send_signal(signal.SIGTERM)
            assert answers == [204, 204, 204]
            # The agent polls again at once on its kept-alive connection: told
            # so, not held until the graceful timeout and cut off with an empty
            # 500 (or the connection is gone already, the server having exited).
            try:
                again = await agent.wait(client, timeout=120)
            except httpx.TransportError:
                pass
            else:
                assert again.status_code == 503, again.text
                assert again.json()["error"]["code"] == "shutting_down" and again.headers["Retry-After"]
            assert server.wait() == 0


async def _polls_waiting(server: ServerProcess) -> float:
    """``app_command_polls_waiting`` from ``/metrics``."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{server.base_url}/metrics")).text
    return next(float(line.split()[1]) for line in text.splitlines()
                if line.startswith("app_command_polls_waiting "))


def nested(depth: int) -> Any:
    """A JSON value with lists nested ``depth`` levels deep."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [40, 253])
async def test_free_form_json_nested_too_deep_is_400_naming_the_field_and_harms_nothing(
        server: ServerProcess, depth: int) -> None:
    # orjson encodes at most 254 levels: such a value once crashed the store
    # actor on every try, until the root supervisor gave up and the server exited.
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        for _ in range(8):  # more than the root's restart intensity allows
            response = await client.post(operator.url(agent.deployment_hash, "/commands"), headers=operator.auth,
                                         json={"type": "x", "parameters": {"x": nested(depth)}})
            assert response.status_code == 400, response.text
            assert "$.parameters" in response.json()["error"]["message"]
            assert "nested at most 32 levels" in response.json()["error"]["message"]
        response = await client.post(operator.url(), json={"metadata": {"x": nested(depth)}}, headers=operator.auth)
        assert response.status_code == 400 and "$.metadata" in response.json()["error"]["message"]

        deployment = await operator.create_deployment(client)
        register = await client.post(f"{server.base_url}/api/v1/agent/register", json={
            "deployment_hash": deployment["deployment_hash"], "enrollment_token": deployment["enrollment_token"],
            "system_info": {"x": nested(depth)}})
        assert register.status_code == 400 and "$.system_info" in register.json()["error"]["message"]

        sent = await operator.command(client, agent.deployment_hash)
        assert await agent.poll(client, timeout=5) is not None
        refused = await agent.report(client, sent["command_id"], result=nested(depth))
        assert refused.status_code == 400 and "$.result" in refused.json()["error"]["message"], refused.text
        assert (await agent.report(client, sent["command_id"], result={"ok": nested(30)})).status_code == 200
    log = server.stderr()
    assert "crashed" not in log and "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize("value", ["\u00b2", "\u2460", "1" * 4400, "-1", "1e3"])
async def test_integer_query_parameters_take_ascii_digits_only(server: ServerProcess, value: str) -> None:
    # "²" and "①" pass str.isdigit() and fail int(); 4,400 digits exceed int()'s limit: both once answered 500.
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        listing = await client.get(operator.url(agent.deployment_hash, "/commands"), params={"offset": value},
                                   headers=operator.auth)
        assert listing.status_code == 400 and listing.json()["error"]["details"]["field"] == "offset"
        url = f"{server.base_url}/api/v1/agent/commands/wait/{agent.deployment_hash}"
        poll = await client.get(url, params={"timeout": value}, headers=agent.headers(b""))
        assert poll.status_code == 400 and "timeout" in poll.json()["error"]["message"]


async def test_an_absurd_x_timestamp_is_clock_skew(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        _, agent = await setup(server, client)
        response = await agent.wait(client, timeout=1, **{"X-Timestamp": "1" + "0" * 400})
        assert response.status_code == 401 and response.json()["error"]["code"] == "clock_skew", response.text


async def test_a_cancel_racing_the_final_report_is_200_or_409_never_404(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        answers = set()
        for _ in range(15):
            sent = await operator.command(client, agent.deployment_hash)
            assert await agent.poll(client, timeout=5) is not None
            url = operator.url(agent.deployment_hash, f"/commands/{sent['command_id']}/cancel")
            async with trio.open_nursery() as nursery:
                async def cancel() -> None:
                    answers.add((await client.post(url, headers=operator.auth)).status_code)

                nursery.start_soon(cancel)
                nursery.start_soon(agent.report, client, sent["command_id"])
        assert answers <= {200, 409}, answers


async def test_refusals_are_audited_in_records_of_bounded_size(server: ServerProcess) -> None:
    hash_ = "a" * 7000  # anyone may send this (paths: 8,192 characters at most); each refusal is recorded
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.base_url}/api/v1/agent/commands/wait/{hash_}",
                                    headers={"Authorization": "Bearer not-a-token"})
        assert response.status_code == 401

    async def recorded() -> list[tuple[int, int]]:
        reader = StoreReader(server.database)  # the store commits it a moment later
        try:
            records, _ = await reader.audit(None, action="auth.failure", actor=None, since=None, until=None,
                                            limit=1000, offset=0, every_tenant=True)
        finally:
            reader.close()
        return [(len(orjson.dumps(r.entry.details)), len(r.entry.resource_id or "")) for r in records
                if b"aaaaaaaa" in orjson.dumps(r.entry.details)]

    rows = await eventually(recorded)
    assert max(size for size, _ in rows) < 1024 and max(size for _, size in rows) <= 256, rows


async def test_a_new_commands_unknown_key_is_named_with_the_closest_known_one(server: ServerProcess) -> None:
    """A misspelt key was ignored: ``priorty: critical`` queued the command at normal priority."""
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        response = await client.post(operator.url(agent.deployment_hash, "/commands"),
                                     json={"type": "restart", "priorty": "critical"}, headers=operator.auth)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["code"], error["details"]["errors"][0]["path"]) == ("invalid_command", "$.priorty")
        assert "did you mean priority?" in error["message"]
        listed = await client.get(operator.url(agent.deployment_hash, "/commands"), headers=operator.auth)
        assert listed.json()["commands"] == []


async def test_a_misspelt_metadata_key_is_refused_not_dropped(server: ServerProcess) -> None:
    """``metadata.requires_confirmaton: true`` was accepted and dropped: the
    command was queued for delivery without the confirmation it asked for."""
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        response = await client.post(operator.url(agent.deployment_hash, "/commands"), headers=operator.auth,
                                     json={"type": "restart", "metadata": {"requires_confirmaton": True}})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["code"], error["details"]["errors"][0]["path"]) == (
            "invalid_command", "$.metadata.requires_confirmaton")
        assert "did you mean requires_confirmation?" in error["message"]
        listed = await client.get(operator.url(agent.deployment_hash, "/commands"), headers=operator.auth)
        assert listed.json()["commands"] == []
        spelt = await client.post(operator.url(agent.deployment_hash, "/commands"), headers=operator.auth,
                                  json={"type": "restart", "metadata": {"requires_confirmation": True}})
        assert (spelt.status_code, spelt.json()["status"]) == (202, "awaiting_confirmation"), spelt.text


async def test_a_flood_of_bad_tokens_is_audited_as_a_sample_with_how_many_were_left_out() -> None:
    """Every refusal that names nobody was one audit row (kept for the history
    retention): one address sending bad tokens wrote ~90 rows a second. Its
    first ones are recorded, the rest counted, and its next recorded refusal
    says how many were left out."""
    with ServerProcess(["--rate-per-address", "100000"]) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            for _ in range(300):
                response = await client.get("/api/v1/users/me", headers={"Authorization": "Bearer flood"})
                assert response.status_code == 401

        async def refusals() -> list[dict[str, Any]]:
            reader = StoreReader(server.database)
            try:
                records, _ = await reader.audit(None, action="auth.failure", actor=None, since=None, until=None,
                                                limit=1000, offset=0, every_tenant=True)
            finally:
                reader.close()
            return [r.entry.details for r in records]

        recorded = await eventually(refusals)
        assert 0 < len(recorded) <= 30, len(recorded)
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            async def said_left_out() -> list[dict[str, Any]] | None:
                response = await client.get("/api/v1/users/me", headers={"Authorization": "Bearer flood"})
                assert response.status_code == 401
                rows = await refusals()
                # Each row, and those left out before it: every refusal up to the last row. (On a
                # slow machine the budget refills during the flood: a row within it says some.)
                told = len(rows) + sum(d.get("unrecorded_before", 0) for d in rows)
                return rows if told >= 300 and any("unrecorded_before" in d for d in rows) else None

            rows = await eventually(said_left_out, deadline=20)  # once the address's budget has a token again
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            exposed = (await client.get("/metrics")).text
        counted = next(float(line.split()[-1]) for line in exposed.splitlines()
                       if line.startswith("app_audit_refusals_unrecorded_total"))
        assert counted >= 300 - len(rows)


async def test_a_flood_of_an_agents_bad_signatures_is_audited_as_a_sample_per_agent() -> None:
    """A refusal whose token proved who sent it was audited row by row: one
    agent token with bad signatures wrote ~7,000 rows a minute into its
    tenant's log (kept 30 days). Sampled per agent, and with no cap over all
    agents: another tenant's agent, refused meanwhile, is recorded."""
    with ServerProcess(["--rate-per-address", "100000"]) as server:
        async with httpx.AsyncClient() as client:
            _, flooder = await setup(server, client)
            _, other = await setup(server, client)
            for _ in range(200):
                refused = await flooder.wait(client, timeout=1, **{"X-Agent-Signature": "A" * 44})
                assert refused.status_code == 401, refused.text
            assert (await other.wait(client, timeout=1, **{"X-Agent-Signature": "A" * 44})).status_code == 401

        async def refusals(agent: StatusAgent) -> list[dict[str, Any]]:
            reader = StoreReader(server.database)
            try:
                records, _ = await reader.audit(None, action="auth.failure", actor=f"agent:{agent.agent_id}",
                                                since=None, until=None, limit=1000, offset=0, every_tenant=True)
            finally:
                reader.close()
            return [r.entry.details for r in records]

        recorded = await eventually(lambda: refusals(flooder))
        assert 0 < len(recorded) <= 30, len(recorded)
        assert len(await eventually(lambda: refusals(other))) == 1
        async with httpx.AsyncClient() as client:
            async def said_left_out() -> list[dict[str, Any]] | None:
                refused = await flooder.wait(client, timeout=1, **{"X-Agent-Signature": "A" * 44})
                assert refused.status_code == 401
                rows = await refusals(flooder)
                # Every refusal is a row or counted in a later row's unrecorded_before: once the agent's sample
                # has room again, a row says how many the flood left out (a flood slower than a refill has a
                # row within it that says some, and the next says the rest).
                return rows if len(rows) + sum(d.get("unrecorded_before", 0) for d in rows) >= 200 else None

            rows = await eventually(said_left_out, deadline=60)
        assert any("unrecorded_before" in d for d in rows)


async def test_progress_reports_make_one_history_entry_and_transitions_stay_exact(server: ServerProcess) -> None:
    """Each report used to add an entry and rewrite the whole history: its cost,
    and the command's GET, grew with every report of a long-running command."""
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        created = await operator.command(client, agent.deployment_hash)
        polled = await agent.poll(client, timeout=5)
        assert polled is not None and polled.command_id == created["command_id"]
        for percent in range(30):
            body = {**json.loads(agent.report_body(polled.command_id, "executing")),
                    "progress": percent, "stage": f"step {percent}"}
            response = await agent.report(client, polled.command_id,
                                          body=json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
            assert response.status_code == 200, response.text
        assert (await agent.report(client, polled.command_id, "success", result={"ok": True})).status_code == 200
        command = await operator.get(client, agent.deployment_hash, polled.command_id)
        assert [(h["status"], h["event"]) for h in command["history"]] == [
            ("queued", "created"), ("sent", "deliver"), ("executing", "progress"), ("completed", "complete")]
        run = command["history"][2]
        assert run["count"] == 30 and run["detail"]["percent"] == 29.0 and run["detail"]["stage"] == "step 29"
        assert run["at"] <= run["last_at"] <= command["history"][3]["at"]


async def test_parameters_over_their_limit_are_named_as_every_invalid_field_is() -> None:
    with ServerProcess() as server:
        async with httpx.AsyncClient() as client:
            operator, agent = await setup(server, client)
            refused = await client.post(operator.url(agent.deployment_hash, "/commands"),
                                        json={"type": "x", "parameters": {"blob": "x" * 70_000}}, headers=operator.auth)
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert error["code"] == "invalid_command"
            assert error["details"]["total"] == 1
            assert error["details"]["errors"][0]["path"] == "$.parameters"
            assert "at most 65536 bytes" in error["details"]["errors"][0]["message"]


async def test_open_commands_parameters_have_a_byte_budget_per_deployment() -> None:
    """~67 KB of memory per open command with 60 KB of parameters, 1,000 open
    commands per deployment and 50 deployments per tenant: one operator could
    hold gigabytes in the queues."""
    blob = "x" * 30_000
    with ServerProcess(["--max-open-parameter-bytes", "64KiB"]) as server:
        async with httpx.AsyncClient() as client:
            operator, agent = await setup(server, client)
            first = await operator.command(client, agent.deployment_hash, parameters={"blob": blob})
            await operator.command(client, agent.deployment_hash, parameters={"blob": blob})
            refused = await client.post(operator.url(agent.deployment_hash, "/commands"),
                                        json={"type": "x", "parameters": {"blob": blob}}, headers=operator.auth)
            assert refused.status_code == 403, refused.text
            error = refused.json()["error"]
            assert error["code"] == "quota_exceeded"
            size = parameters_bytes({"blob": blob})
            assert size >= len('{"blob":""}') + len(blob)
            assert error["details"] == {"limit": 64 * 1024, "setting": "commands.max_open_parameter_bytes",
                                        "in_use": 2 * size, "requested": size}
            assert "would take" in error["message"] and "is reached" not in error["message"], error
            await operator.command(client, agent.deployment_hash, parameters={"small": 1})  # still room for it
            cancel = await client.post(operator.url(agent.deployment_hash, f"/commands/{first['command_id']}/cancel"),
                                       headers=operator.auth)
            assert cancel.status_code == 200, cancel.text
            await operator.command(client, agent.deployment_hash, parameters={"blob": blob})  # a finished one's room


async def test_open_commands_parameters_count_the_memory_they_take_not_only_their_json() -> None:
    """``[{},{},...]`` is 3 bytes of JSON an item and ~72 in memory: counted
    as JSON, a deployment's 4 MiB budget held ~98 MiB, and one operator's 50
    deployments ~4.9 GB (again after every restart)."""
    with ServerProcess(["--max-open-parameter-bytes", "1MiB"]) as server:
        async with httpx.AsyncClient() as client:
            operator, agent = await setup(server, client)
            dense = {"x": [{}] * 20_000}  # 60 KB of JSON, ~1.4 MB parsed
            assert len(orjson.dumps(dense)) < 64 * 1024
            refused = await client.post(operator.url(agent.deployment_hash, "/commands"),
                                        json={"type": "x", "parameters": dense}, headers=operator.auth)
            assert refused.status_code == 403, refused.text
            details = refused.json()["error"]["details"]
            assert details["setting"] == "commands.max_open_parameter_bytes"
            assert details["requested"] > 20 * len(orjson.dumps(dense)), details
            await operator.command(client, agent.deployment_hash, parameters={"x": [{}] * 2_000})  # ~140 KB: room


async def test_a_tenants_stored_commands_have_a_byte_quota_its_agents_results_pass_but_new_commands_do_not() -> None:
    """One tenant stored ~3.2 GiB of results a minute within every rate
    budget, until the disk was full for every tenant (a reviewer's)."""
    with ServerProcess(["--max-tenant-command-bytes", "64KiB"]) as server:
        async with httpx.AsyncClient() as client:
            operator, agent = await setup(server, client)
            ran = await operator.command(client, agent.deployment_hash, parameters={"pad": "p" * 20_000})
            polled = await agent.poll(client, timeout=5)
            assert polled is not None and polled.command_id == ran["command_id"]
            # The result takes the tenant over its quota: recorded all the same.
            answer = await agent.report(client, polled.command_id, "success", result={"log": "r" * 60_000})
            assert answer.status_code == 200, answer.text
            command = await operator.get(client, agent.deployment_hash, polled.command_id)
            assert command["status"] == "completed" and command["result"] == {"log": "r" * 60_000}

            # Any deployment of the tenant: the quota is the tenant's.
            elsewhere = (await operator.create_deployment(client))["deployment_hash"]
            for deployment_hash in (agent.deployment_hash, elsewhere):
                refused = await client.post(operator.url(deployment_hash, "/commands"), json={"type": "restart"},
                                            headers=operator.auth)
                assert refused.status_code == 403, refused.text
                error = refused.json()["error"]
                assert error["code"] == "quota_exceeded"
                assert error["details"]["limit"] == 64 * 1024
                assert error["details"]["setting"] == "tenants.max_command_bytes"
                assert error["details"]["in_use"] > 80_000, error
            other, theirs = await setup(server, client)  # another tenant's room is its own
            await other.command(client, theirs.deployment_hash)


async def test_a_command_created_again_with_its_idempotency_key_is_the_first_one(server: ServerProcess) -> None:
    """A script that sent a creation again after a 504 outcome_unknown (or a
    dropped connection) ran a container restart twice (a reviewer's)."""
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        url = operator.url(agent.deployment_hash, "/commands")
        key = {"Idempotency-Key": "550e8400-e29b-41d4-a716-446655440000"}
        body = {"type": "restart", "parameters": {"app_code": "web"}}
        first = await client.post(url, json=body, headers={**operator.auth, **key})
        assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers, first.text
        # Sent again (its keys in another order): the first answer, as it was, and no second command.
        again = await client.post(url, json={"parameters": {"app_code": "web"}, "type": "restart"},
                                  headers={**operator.auth, **key})
        assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true", again.text
        assert again.content == first.content
        polled = await agent.poll(client, timeout=5)
        assert polled is not None and polled.command_id == first.json()["command_id"]
        assert await agent.poll(client, timeout=1) is None
        # Still the first answer once the command went on (it is the same request).
        assert (await client.post(url, json=body, headers={**operator.auth, **key})).content == first.content

        # The key with another request: refused, naming the header.
        other = await client.post(url, json={"type": "stop"}, headers={**operator.auth, **key})
        assert other.status_code == 422, other.text
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        assert other.json()["error"]["details"]["header"] == "Idempotency-Key"
        # Another user's key of the same name is a key of its own.
        colleague = Operator(server, fresh("user"), operator.tenant)
        theirs = await client.post(colleague.url(), json={}, headers=colleague.auth)
        mine = await client.post(colleague.url(theirs.json()["deployment_hash"], "/commands"), json=body,
                                 headers={**colleague.auth, **key})
        assert mine.status_code == 202 and mine.json()["command_id"] != first.json()["command_id"]
        for bad in (b"k" * 256, "clé".encode(), b"tab\there"):
            refused = await client.post(url, json=body, headers={**operator.auth, "Idempotency-Key": bad})
            assert refused.status_code == 400, (bad, refused.text)
            assert refused.json()["error"]["code"] == "invalid_idempotency_key"
            assert refused.json()["error"]["details"] == {"header": "Idempotency-Key"}
        # A body nested past what can be written back (255 levels) is refused as without a key, not a 500.
        deep = '{"type": "x", "parameters": {"a": ' + "[" * 300 + "]" * 300 + "}}"
        refused = await client.post(url, content=deep, headers={**operator.auth, **key,
                                                                "Content-Type": "application/json"})
        assert refused.status_code == 400, refused.text
        listed = await client.get(url, headers=operator.auth)
        assert listed.json()["total"] == 1


async def test_a_container_restart_sent_again_with_its_idempotency_key_is_queued_once(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        owner, agent = await setup(server, client)
        node_id = await reported_container(client, server, owner, agent)
        url = f"{server.base_url}/api/v1/query/nodes/{node_id}/controls/restart"
        headers = {**owner.auth, "Idempotency-Key": "restart web, try 1"}
        first = await client.post(url, json={"parameters": {"timeout": 5}}, headers=headers)
        assert first.status_code == 202, first.text
        again = await client.post(url, json={"parameters": {"timeout": 5}}, headers=headers)
        assert (again.status_code, again.content) == (202, first.content)
        assert again.headers["Idempotent-Replayed"] == "true"
        other = await client.post(url.replace("/restart", "/stop"), json={}, headers=headers)
        assert (other.status_code, other.json()["error"]["code"]) == (422, "idempotency_key_reused")
        listed = await client.get(owner.url(agent.deployment_hash, "/commands"), headers=owner.auth)
        assert [c["command_id"] for c in listed.json()["commands"]] == [first.json()["command_id"]]


async def test_an_answer_to_a_cancel_notice_that_was_never_sent_is_404(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        queued = await operator.command(client, agent.deployment_hash)  # not asked to cancel
        for command_id in ("cancel:nope", "cancel:", f"cancel:{queued['command_id']}"):
            answer = await agent.report(client, command_id, "success")
            assert answer.status_code == 404, (command_id, answer.text)
            assert answer.json()["error"]["code"] == "command_not_found"


async def test_a_command_without_an_error_has_no_error_bytes(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        created = await operator.command(client, agent.deployment_hash)
        polled = await agent.poll(client, timeout=5)
        assert polled is not None and polled.command_id == created["command_id"]
        assert (await agent.report(client, polled.command_id, "success", result={"ok": True})).status_code == 200
        command = await operator.get(client, agent.deployment_hash, polled.command_id)
        assert (command["error"], command["error_bytes"], command["error_truncated"]) == (None, 0, False)
        listing = await client.get(operator.url(agent.deployment_hash, "/commands"), headers=operator.auth)
        [item] = listing.json()["commands"]
        assert (item["error"], item["error_bytes"]) == (None, 0)


@pytest.mark.parametrize("claimed", ["2099-01-01T00:00:00Z", "1970-01-01T00:00:01Z"])
async def test_the_start_an_agent_reports_is_kept_within_what_the_server_saw(server: ServerProcess,
                                                                              claimed: str) -> None:
    """A ``started_at`` of 2099 or 1970 was kept as it came: after the command
    completed, or before it was created."""
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        created = await operator.command(client, agent.deployment_hash)
        assert await agent.poll(client, timeout=5) is not None
        body = json.loads(agent.report_body(created["command_id"], "success", result={"ok": True}))
        body["started_at"] = claimed
        answer = await agent.report(client, created["command_id"],
                                    body=json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
        assert answer.status_code == 200, answer.text
        command = await operator.get(client, agent.deployment_hash, created["command_id"])
        sent = next(h["at"] for h in command["history"] if h["status"] == "sent")
        assert sent <= command["started_at"] <= command["completed_at"], command
