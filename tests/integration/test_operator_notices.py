"""Small things an operator or agent relies on: the agent configuration the
registration answer points to, the open-reads warning, exact integers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import attrs
import httpx
import pytest

from tests.integration.test_commands import Operator, enroll, fresh
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from trioscope.config import Settings
from trioscope.http._memory_budget import TYPICAL_CONTAINERS, TYPICAL_PROCESSES, typical_host_warning
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
    assert "WARNING: listening on every IPv4 interface with open reads" in banner
    assert "Host:                  0.0.0.0  (every IPv4 interface; --host :: for IPv6 too)" in banner
    assert "--protect-reads true" in banner and "--host 127.0.0.1" in banner
    assert "open reads" in server.stderr()  # also logged
    assert "answers requests under any host name" in server.stderr() and "--allowed-hosts" in server.stderr()
    with ServerProcess(["--host", "0.0.0.0", "--allowed-hosts", "mon.example"]) as named:
        named.read_banner()
    assert "any host name" not in named.stderr()


@pytest.mark.parametrize(("host", "protect", "warned"), [
    ("0.0.0.0", False, True), ("::", False, True), ("10.1.2.3", False, True), ("example.org", False, True),
    ("127.0.0.1", False, False), ("::1", False, False), ("localhost", False, False), ("0.0.0.0", True, False),
])
def test_which_binds_are_warned_about(host: str, protect: bool, warned: bool) -> None:
    defaults = Settings.defaults()
    settings = attrs.evolve(defaults, server=attrs.evolve(defaults.server, host=host),
                            auth=attrs.evolve(defaults.auth, protect_reads=protect))
    assert (open_reads_warning(settings) is not None) is warned


def test_a_history_too_long_for_a_usual_host_s_budget_is_warned_of_at_start_and_such_a_host_is_refused() -> None:
    """The configuration check refuses only a history a bare host cannot
    keep within ``--agent-memory-budget``; 48h with the default 4 MiB passes
    it, and a host of 10 containers and 100 processes is then refused."""
    with ServerProcess(["--max-data-age", "48h"]) as server:
        report = host_report(1, timestamp=time.time(), containers=TYPICAL_CONTAINERS, processes=TYPICAL_PROCESSES,
                             connections=0)
        answer = httpx.post(f"{server.base_url}/api/v1/reports", json=report)
        assert answer.status_code == 413 and answer.json()["error"]["code"] == "memory_budget_exceeded"
        warning = server.stderr()  # logged before the banner, which the server is started once it printed
    assert "agents.memory_budget 4MiB is below what a host of 10 containers" in warning
    assert "storage.max_data_age 48h" in warning and "--agent-memory-budget to at least 5MiB" in warning


def test_a_usual_host_that_fits_is_not_warned_of() -> None:
    assert typical_host_warning(Settings.defaults()) is None
    defaults = Settings.defaults()
    day = attrs.evolve(defaults, storage=attrs.evolve(defaults.storage, max_data_age=24 * 3600.0))
    assert typical_host_warning(day) is None
