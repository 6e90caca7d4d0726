"""``/metrics`` with ``--protect-reads``, against a real server: a user sees its
own tenant's tenant-labelled series and none of another tenant's (whose
deployments it cannot even tell exist on the API); an ADMIN, who Prometheus
scrapes as, sees every tenant's. The exposition stays valid either way."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_commands import Operator, enroll, fresh
from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(["--protect-reads", "true"]) as process:
        yield process


def _scrape(server: ServerProcess, client: httpx.Client, user: str, tenant: str, role: str) -> str:
    token = server.user_token(user, tenant, role)
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    list(text_string_to_metric_families(response.text))  # parses: a valid exposition
    return response.text


def _naming(text: str, tenant: str, agent: StatusAgent) -> list[str]:
    return [line for line in text.splitlines()
            if f'tenant="{tenant}"' in line or agent.agent_id in line or agent.deployment_hash in line]


async def test_a_user_sees_only_its_own_tenants_series_and_an_admin_every_tenants(server: ServerProcess) -> None:
    owner = Operator(server, fresh("alice"), fresh("tenant-a"), "ADMIN")
    async with httpx.AsyncClient() as client:
        agent = await enroll(client, server, owner)
        assert (await agent.wait(client, timeout=1)).status_code == 204  # heard from: its last_seen series
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        other_tenant = fresh("tenant-b")
        for role in ("VIEWER", "OPERATOR"):
            seen = _naming(_scrape(server, client, fresh("eve"), other_tenant, role), owner.tenant, agent)
            assert seen == [], seen
        own = _scrape(server, client, fresh("vic"), owner.tenant, "VIEWER")
        assert f'trydirect_agents_total{{tenant="{owner.tenant}"}} 1.0' in own
        assert any(line.startswith("trydirect_agent_last_seen_seconds{") and agent.agent_id in line
                   for line in own.splitlines())
        # Not the server's own series: they count every tenant's requests, agents, reports.
        assert "\napp_http_request_duration_seconds_bucket{" not in own
        assert "\napp_reports_received_total " not in own and "# TYPE app_reports_received_total" in own
        everything = _scrape(server, client, fresh("root"), other_tenant, "ADMIN")
        assert f'trydirect_agents_total{{tenant="{owner.tenant}"}} 1.0' in everything
        assert any(agent.agent_id in line for line in everything.splitlines())
        assert "\napp_http_request_duration_seconds_bucket{" in everything
        # The API does not tell that tenant's deployment exists either.
        eve = fresh("eve")
        assert client.get(f"/api/v1/users/{eve}/deployments/{agent.deployment_hash}", headers={
            "Authorization": f"Bearer {server.user_token(eve, other_tenant, 'VIEWER')}"}).status_code == 404
