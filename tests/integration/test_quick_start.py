"""The seed's quick start ("Quick API Tour" of task21-quick-start.txt), request for
request, against a real server: the same paths, headers and JSON bodies as its
curl commands, and the status codes and response shapes the seed and its PRD
promise."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.server_process import ServerProcess

JSON = {"Content-Type": "application/json"}

# The bodies exactly as the seed's curl commands send them (-d '...').
REGISTER_BODY = '{"agent_id":"agent-1","hostname":"host-1","metadata":{"version":"1.0.0"}}'
REPORT_BODY = """{
    "agent_id": "agent-1",
    "hostname": "host-1",
    "timestamp": "2025-10-12T00:00:00Z",
    "host_info": {
      "hostname": "host-1",
      "kernel_version": "5.10.0",
      "cpu_info": {"model": "Intel i7", "cores": 8, "usage": 25.5},
      "memory_info": {"total_mb": 16384, "used_mb": 8192, "free_mb": 8192, "available_mb": 8192, "usage": 50.0}
    }
  }"""

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?\d+(\.\d+)?(s|ms|µs|ns)$")


def assert_contains(actual: Any, expected: Any, path: str = "$") -> None:
    """Every key and value of ``expected`` is in ``actual`` (extra keys allowed)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} is missing from {actual!r}"
            assert_contains(actual[key], value, f"{path}.{key}")
    else:
        assert actual == expected, f"{path}: expected {expected!r}, got {actual!r}"


class Tour:
    """One server that went through steps 1 and 2 of the tour."""

    def __init__(self, client: httpx.Client, register: httpx.Response, report: httpx.Response) -> None:
        self.client = client
        self.register = register
        self.report = report


@pytest.fixture(scope="module")
def tour() -> Iterator[Tour]:
    with ServerProcess() as server, httpx.Client(base_url=server.base_url, timeout=10) as client:
        # 1. Register an agent.
        register = client.post("/api/v1/agents/register", headers=JSON, content=REGISTER_BODY)
        # 2. Submit a report.
        report = client.post("/api/v1/reports", headers=JSON, content=REPORT_BODY)
        yield Tour(client, register, report)


def test_register_answers_201_registered(tour: Tour) -> None:
    assert tour.register.status_code == 201, tour.register.text
    assert tour.register.headers["content-type"].startswith("application/json")
    assert_contains(tour.register.json(),
                    {"status": "registered", "message": "Agent agent-1 registered successfully"})


def test_report_answers_202_accepted(tour: Tour) -> None:
    assert tour.report.status_code == 202, tour.report.text
    assert_contains(tour.report.json(), {"status": "accepted", "message": "Report processed successfully"})


def test_list_agents_shows_the_registered_agent(tour: Tour) -> None:
    response = tour.client.get("/api/v1/agents/list")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    assert len(body["agents"]) == 1
    assert_contains(body["agents"][0], {"agent_id": "agent-1", "hostname": "host-1",
                                        "metadata": {"version": "1.0.0"}})


def test_topology_has_the_reported_host(tour: Tour) -> None:
    response = tour.client.get("/api/v1/query/topology")
    assert response.status_code == 200
    topology = response.json()["topology"]
    assert isinstance(topology["nodes"], dict) and isinstance(topology["edges"], dict)
    assert RFC3339_UTC.match(topology["timestamp"]), topology["timestamp"]
    host = topology["nodes"]["host:host-1"]
    assert host["type"] == "host" and host["label"] == "host-1"
    assert host["metrics"]["cpu_usage"] == 25.5
    assert host["metrics"]["memory_usage"] == 50.0


def test_latest_report_is_the_submitted_report(tour: Tour) -> None:
    response = tour.client.get("/api/v1/query/agents/agent-1/latest")
    assert response.status_code == 200
    body = response.json()
    assert body["agent_id"] == "agent-1"
    assert_contains(body["report"], json.loads(REPORT_BODY))


def test_stats_has_the_seed_keys(tour: Tour) -> None:
    response = tour.client.get("/api/v1/query/stats")
    assert response.status_code == 200
    stats = response.json()
    assert {"agents", "websocket_clients", "storage", "topology", "uptime"} <= stats.keys()
    assert stats["agents"] == 1
    assert stats["websocket_clients"] == 0
    assert isinstance(stats["storage"], dict) and isinstance(stats["topology"], dict)
    assert GO_DURATION.match(stats["uptime"]), stats["uptime"]


@pytest.mark.parametrize("duration", ["1h", "5m"])
def test_timeseries_has_the_report_as_a_point(tour: Tour, duration: str) -> None:
    response = tour.client.get("/api/v1/query/agents/agent-1/timeseries", params={"duration": duration})
    assert response.status_code == 200
    body = response.json()
    assert body["agent_id"] == "agent-1"
    assert body["duration"] == duration
    assert body["count"] == len(body["points"]) >= 1
    point = body["points"][-1]
    assert RFC3339_UTC.match(point["timestamp"])
    assert point["cpu_usage"] == 25.5


def test_health_and_ping(tour: Tour) -> None:
    health = tour.client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "healthy"
    assert datetime.strptime(health.json()["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    ping = tour.client.get("/api/v1/ping")
    assert ping.status_code == 200 and ping.json()["message"] == "pong"
