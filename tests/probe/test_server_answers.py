"""The probe against a real server whose refusals time mends: a request signed
before the server (re)started, a request id used twice, a clock that was off,
a server that restarted and forgot the probe. Each once paused reports or
command polls for ``REFUSED_RETRY`` (5 minutes), as a decommissioned agent does."""

from __future__ import annotations

import time
import uuid
from typing import Any

import attrs
import httpx
import pytest
import trio

from tests.free_port import free_port
from tests.integration.test_commands import Operator
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually
from trioscope.wire import decode_report
from trioscope_probe import _refusals, _signing
from trioscope_probe._agent import CommandAgent, Credentials, enroll
from trioscope_probe._transport import Signer, run_publisher

DEADLINE = 30.0
"""Far below ``REFUSED_RETRY``, far above a few backoff waits on a busy machine."""


class _Clock:
    """The probe's signing clock: ``wrong`` for its first ``times`` signatures, then right."""

    def __init__(self, wrong: float, times: int) -> None:
        self.wrong, self.left = wrong, times

    def time(self) -> float:
        if self.left:
            self.left -= 1
            return self.wrong
        return time.time()


class _Nonces:
    """The probe's request ids: one UUID for its first ``times`` signatures, then new ones."""

    def __init__(self, times: int) -> None:
        self.same, self.left = uuid.uuid4(), times

    def uuid4(self) -> uuid.UUID:
        if self.left:
            self.left -= 1
            return self.same
        return uuid.uuid4()


def _refusals_seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """The (status, error code) of each refusal the probe weighs (``_refusals.retry_of``), as it weighs them."""
    seen: list[tuple[int, str]] = []
    weigh = _refusals.retry_of

    def retry_of(status: int, code: str) -> _refusals.Retry:
        seen.append((status, code))
        return weigh(status, code)

    monkeypatch.setattr(_refusals, "retry_of", retry_of)
    return seen


async def _enrolled(server: ServerProcess, operator: Operator) -> tuple[str, Credentials]:
    """A new deployment and the credentials of an agent enrolled in it."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        deployment = await operator.create_deployment(client)
        credentials = await enroll(client, deployment["deployment_hash"], deployment["enrollment_token"], [])
    return deployment["deployment_hash"], credentials


async def _signer(server: ServerProcess) -> Signer:
    _, credentials = await _enrolled(server, Operator(server, "ops", "acme"))
    return Signer(credentials.agent_id, credentials.agent_token)


async def _reports_taken(client: httpx.AsyncClient, server: ServerProcess, agent_id: str) -> bool:
    agents = (await client.get(f"{server.base_url}/api/v1/agents/list")).json()["agents"]
    return any(a["agent_id"] == agent_id and a["reports_received"] >= 1 for a in agents)


async def _publishing(server: ServerProcess, agent_id: str, signer: Signer | None, task_status: Any) -> None:
    def collect() -> Any:
        report = decode_report(host_report(1, timestamp=time.time(), processes=5, connections=5, peers=[2]))
        return attrs.evolve(report, agent_id=agent_id)

    task_status.started()
    await run_publisher(server.base_url, agent_id, "host-1", 1.0, 10, collect, signer=signer)


async def _reports_with(server: ServerProcess, signer: Signer, agent_id: str) -> None:
    """Publish as ``agent_id`` with ``signer`` until the server holds a report of it."""
    async with httpx.AsyncClient(timeout=30) as client, trio.open_nursery() as nursery:
        await nursery.start(_publishing, server, agent_id, signer)
        await eventually(lambda: _reports_taken(client, server, agent_id), DEADLINE)
        nursery.cancel_scope.cancel(reason="the report arrived")


async def test_reports_signed_before_the_server_started_are_signed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe a second behind the server's clock, just after the server restarted: 401 signed_before_start."""
    before = int(time.time()) - 1
    with ServerProcess() as server:
        signer = await _signer(server)
        clock = _Clock(wrong=before, times=2)
        monkeypatch.setattr(_signing, "time", clock)
        refusals = _refusals_seen(monkeypatch)
        await _reports_with(server, signer, "probe-late-clock")
        assert clock.left == 0  # signed with the late clock, refused, and signed again
        assert (401, "signed_before_start") in refusals  # the server's refusal, which the probe mended


async def test_reports_with_a_request_id_used_before_are_signed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """401 replayed_request: a new request id mends it."""
    with ServerProcess() as server:
        signer = await _signer(server)
        nonces = _Nonces(times=3)
        monkeypatch.setattr(_signing, "uuid", nonces)
        refusals = _refusals_seen(monkeypatch)
        await _reports_with(server, signer, "probe-same-nonce")
        assert nonces.left == 0  # the request id used again, refused, and a new one taken
        assert (401, "replayed_request") in refusals  # the server's refusal, which the probe mended


async def test_reports_refused_for_a_clock_off_by_minutes_are_sent_again_with_backoff(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """401 clock_skew: a clock set right mends it, with no operator to wait for."""
    with ServerProcess() as server:
        signer = await _signer(server)
        clock = _Clock(wrong=time.time() - 3600, times=2)
        monkeypatch.setattr(_signing, "time", clock)
        await _reports_with(server, signer, "probe-clock-set")
        assert clock.left == 0  # signed with the wrong clock, refused, and signed again
        assert "401 clock_skew" in caplog.text  # as the probe said it


async def test_a_command_poll_signed_before_the_server_started_is_signed_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = int(time.time()) - 1
    with ServerProcess() as server:
        operator = Operator(server, "ops", "acme")
        hash_, credentials = await _enrolled(server, operator)
        clock = _Clock(wrong=before, times=1)
        monkeypatch.setattr(_signing, "time", clock)
        refusals = _refusals_seen(monkeypatch)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as probe_client:
            agent = CommandAgent(probe_client, credentials, docker_host=None)
            received: list[str] = []

            async def run_command(item: dict[str, Any]) -> None:
                received.append(item["command_id"])

            agent._run_command = run_command  # type: ignore[method-assign]  # what is delivered, not run
            async with httpx.AsyncClient(timeout=30) as client, trio.open_nursery() as nursery:
                nursery.start_soon(agent._poll_loop)
                created = await operator.command(client, hash_, type="docker.inspect",
                                                 parameters={"container": "web"}, timeout_seconds=30)

                async def delivered() -> bool:
                    return created["command_id"] in received

                await eventually(delivered, DEADLINE)
                nursery.cancel_scope.cancel(reason="the command was delivered")
        # Signed with the late clock, refused, and signed again (how soon: tests/probe/test_transport.py).
        assert clock.left == 0
        assert (401, "signed_before_start") in refusals


async def test_a_restarted_server_that_forgot_the_probe_is_registered_with_again() -> None:
    """The server keeps probes in memory: after a restart their heartbeat is
    404 agent_not_found until they register (or report) again."""
    port = free_port()
    with ServerProcess(["--port", str(port)]) as server:
        async with httpx.AsyncClient(timeout=30) as client, trio.open_nursery() as nursery:
            await nursery.start(_publishing, server, "probe-kept", None)
            await eventually(lambda: _reports_taken(client, server, "probe-kept"), DEADLINE)
            server.stop()
            server.start()
            await eventually(lambda: _reports_taken(client, server, "probe-kept"), DEADLINE)
            nursery.cancel_scope.cancel(reason="the restarted server has a report")
