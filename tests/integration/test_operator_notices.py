"""Small things an operator or agent relies on: the agent configuration the
registration answer points to, the open-reads warning, exact integers."""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import httpx
import pytest

from tests.integration.test_commands import Operator, enroll, fresh
from tests.server_process import ServerProcess
from trioscope.config import Settings
from trioscope.server import open_reads_warning
from trioscope_probe._signing import signed_request


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess() as process:
        yield process


async def test_the_advertised_config_endpoint_answers_the_agent(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        operator = Operator(server, fresh("user"), fresh("tenant"))
        deployment = await operator.create_deployment(client)
        registered = await client.post("/api/v1/agent/register", json={
            "deployment_hash": deployment["deployment_hash"], "enrollment_token": deployment["enrollment_token"]})
        assert registered.status_code == 201, registered.text
        body = registered.json()
        path = body["config_endpoint"]
        assert (await client.get(path)).status_code == 401
        answer = await client.send(signed_request(client, "GET", path, agent_id=body["agent_id"],
                                                  token=body["agent_token"]))
        assert answer.status_code == 200, answer.text
        config = answer.json()
        assert (config["agent_id"], config["deployment_hash"]) == (body["agent_id"], deployment["deployment_hash"])
        assert config["poll"]["max_timeout_seconds"] == 120
        assert "rfc9421-hmac-sha256" in config["signatures"]["schemes"]


async def test_integers_beyond_64_bits_are_refused_not_rounded(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        operator = Operator(server, fresh("user"), fresh("tenant"))
        agent = await enroll(client, server, operator)
        response = await client.post(operator.url(agent.deployment_hash, "/commands"), headers={
            **operator.auth, "Content-Type": "application/json"},
            content=b'{"type": "scale", "parameters": {"replicas": 99999999999999999999999}}')
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_number" and error["details"]["errors"][0]["path"] == "$.parameters.replicas"
        exact = await client.post(operator.url(agent.deployment_hash, "/commands"), headers=operator.auth,
                                  json={"type": "scale", "parameters": {"replicas": 18446744073709551615}})
        assert exact.status_code == 202, exact.text
        stored = await operator.get(client, agent.deployment_hash, exact.json()["command_id"])
        assert stored["parameters"]["replicas"] == 18446744073709551615


def test_the_banner_warns_when_reads_are_open_beyond_this_machine() -> None:
    with ServerProcess(["--host", "0.0.0.0"]) as server:
        banner = "\n".join(server.read_banner())
    assert "WARNING: listening on every interface with open reads" in banner
    assert "--protect-reads true" in banner and "--host 127.0.0.1" in banner
    assert "open reads" in server.stderr()  # also logged


@pytest.mark.parametrize(("host", "protect", "warned"), [
    ("0.0.0.0", False, True), ("::", False, True), ("10.1.2.3", False, True), ("example.org", False, True),
    ("127.0.0.1", False, False), ("::1", False, False), ("localhost", False, False), ("0.0.0.0", True, False),
])
def test_which_binds_are_warned_about(host: str, protect: bool, warned: bool) -> None:
    defaults = Settings.defaults()
    settings = attrs.evolve(defaults, server=attrs.evolve(defaults.server, host=host),
                            auth=attrs.evolve(defaults.auth, protect_reads=protect))
    assert (open_reads_warning(settings) is not None) is warned
