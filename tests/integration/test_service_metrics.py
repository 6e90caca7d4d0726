"""The seed's command-service metrics on /metrics of a real server after real
traffic: names, types, labels (bounded), and promtool's lint of the scrape."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_commands import Operator, enroll, fresh
from tests.server_process import ServerProcess

RULES = Path(__file__).resolve().parents[2] / "config" / "prometheus" / "alerts.yml"

KNOWN_LINT = {'app_agents_total non-counter metrics should not have "_total" suffix',
              'trydirect_agents_total non-counter metrics should not have "_total" suffix'}
"""Names the README and the seed fix, which promtool's naming lint would have otherwise."""


def samples(text: str) -> dict[str, Any]:
    """Family name -> (type, [(sample name, labels, value)])."""
    return {f.name: (f.type, [(s.name, s.labels, s.value) for s in f.samples])
            for f in text_string_to_metric_families(text)}


async def test_command_service_metrics_after_real_traffic(promtool: str) -> None:
    with ServerProcess(["--max-tenant-labels", "1"]) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            first = Operator(server, fresh("user"), fresh("tenant"))
            agent = await enroll(client, server, first)
            second = Operator(server, fresh("user"), fresh("tenant"))
            await enroll(client, server, second)  # past the tenant label cap: tenant="other"

            await first.command(client, agent.deployment_hash, type="restart")
            polled = await agent.poll(client, timeout=5)
            assert polled is not None
            assert (await agent.report(client, polled.command_id, "failed", error="disk full")).status_code == 200
            await first.command(client, agent.deployment_hash, type="made.up-type")
            polled = await agent.poll(client, timeout=5)
            assert polled is not None
            assert (await agent.report(client, polled.command_id, "success", result={})).status_code == 200
            await first.command(client, agent.deployment_hash, type="backup")  # stays queued
            assert (await client.get(f"{server.base_url}/api/v1/no/such/path")).status_code == 404
            scrape = (await client.get(f"{server.base_url}/metrics")).text

    families = samples(scrape)
    tenant = first.tenant

    def only(name: str, kind: str) -> list[tuple[str, dict[str, str], float]]:
        found_kind, found = families[name]
        assert found_kind == kind, name
        return found

    assert {(s[1]["tenant"], s[2]) for s in only("trydirect_agents_total", "gauge")} == {(tenant, 1), ("other", 1)}
    assert (tenant, 1) in {(s[1]["tenant"], s[2]) for s in only("trydirect_agents_online", "gauge")}
    seen = {s[1]["agent"]: s for s in only("trydirect_agent_last_seen_seconds", "gauge")}
    assert seen[agent.agent_id][1]["deployment_hash"] == agent.deployment_hash
    commands = {(s[1]["tenant"], s[1]["type"], s[1]["status"]): s[2] for s in only("trydirect_commands", "counter")}
    assert commands == {(tenant, "restart", "failed"): 1, (tenant, "other", "completed"): 1}
    failed = {(s[1]["type"], s[1]["error_type"]): s[2] for s in only("trydirect_commands_failed", "counter")}
    assert failed == {("restart", "agent_error"): 1}
    durations = only("trydirect_commands_duration_seconds", "histogram")
    assert {s[1]["type"] for s in durations} == {"restart", "other"}
    assert [s[2] for s in only("trydirect_commands_queue_size", "gauge")] == [1]
    assert only("trydirect_queue_processing_lag_seconds", "gauge")[0][2] > 0
    assert only("trydirect_database_connections_active", "gauge")[0][2] >= 1
    assert any(s[0].endswith("_count") and s[2] >= 1
               for s in only("trydirect_agent_heartbeat_latency_seconds", "histogram"))

    requests = only("trydirect_api_requests", "counter")
    endpoints = {s[1]["endpoint"] for s in requests}
    assert "/api/v1/users/<user_id>/deployments/<deployment_hash>/commands" in endpoints
    assert "unmatched" in endpoints
    assert not any(agent.deployment_hash in e or first.user_id in e for e in endpoints), "raw paths in labels"
    assert {s[1]["method"] for s in requests} >= {"GET", "POST"}
    assert {"endpoint", "method"} <= set(only("trydirect_api_request_duration_seconds", "histogram")[0][1])
    assert ("not_found", 1) in {(s[1]["type"], s[2]) for s in only("trydirect_api_errors", "counter")}
    assert "app_reports_received" in families and "app_http_request_duration_seconds" in families  # still there

    # Every metric the shipped rules use is exported.
    used = set(re.findall(r"trydirect_[a-z_]+", RULES.read_text()))
    exported = {s[0] for _, found in families.values() for s in found}
    assert used <= exported | {f"{name}_total" for name in families}, used - exported

    lint = subprocess.run([promtool, "check", "metrics"], input=scrape, capture_output=True, text=True, timeout=60)
    problems = {line.strip() for line in (lint.stdout + lint.stderr).splitlines() if line.strip()}
    assert problems <= KNOWN_LINT, problems
