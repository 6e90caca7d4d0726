"""Every HTTP endpoint's success and error cases, against a real server process.

Most tests share one server (started with ``--max-body-size 64KiB`` so that the
size limits are cheap to reach) and keep out of each other's way by using their
own agent ids and host names. Tests that need other settings, or that stop the
server, start their own.
"""

from __future__ import annotations

import gzip
import itertools
import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.bus_server import report_path
from tests.server_process import ServerProcess
from tests.synthetic import host_report

LIMIT = 64 * 1024
"""The shared server's ``--max-body-size``."""
VIEWS = ("hosts", "containers", "processes", "pods", "services", "processes-by-name")
VIEW_TYPE = {"hosts": "host", "containers": "container", "processes": "process", "pods": "pod",
             "services": "service", "processes-by-name": "process_group"}
MESH = (1, 2, 3)
"""Synthetic hosts host-1..host-3 (agents mesh-1..mesh-3), each a client of the others."""


# ---- helpers ------------------------------------------------------------------------------

_ids = itertools.count(1)


def fresh(prefix: str) -> str:
    """An agent id (or host name) no other test uses."""
    return f"{prefix}-{next(_ids)}"


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def minimal_report(agent_id: str, *, timestamp: float | None = None, **fields: Any) -> dict[str, Any]:
    report: dict[str, Any] = {"agent_id": agent_id, "hostname": f"{agent_id}-host",
                              "timestamp": iso(time.time() if timestamp is None else timestamp)}
    report.update(fields)
    return report


def assert_error(response: httpx.Response, status: int, code: str, *mentions: str) -> dict[str, Any]:
    """The JSON error shape with ``status`` and ``code``, its message naming ``mentions``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    for text in mentions:
        assert text in error["message"], f"{text!r} not in {error['message']!r}"
    return error  # type: ignore[no-any-return]


def error_paths(response: httpx.Response) -> list[str]:
    return [problem["path"] for problem in response.json()["error"]["details"]["errors"]]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "the condition") -> None:
    """Poll ``predicate`` every 50 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def topology(client: httpx.Client, view: str | None = None) -> dict[str, Any]:
    response = client.get("/api/v1/query/topology", params={"view": view} if view else None)
    assert response.status_code == 200, response.text
    return response.json()["topology"]  # type: ignore[no-any-return]


def agents_by_id(client: httpx.Client) -> dict[str, dict[str, Any]]:
    response = client.get("/api/v1/agents/list")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == len(body["agents"])
    return {agent["agent_id"]: agent for agent in body["agents"]}


def metric_samples(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def post_report(client: httpx.Client, report: dict[str, Any]) -> httpx.Response:
    return client.post("/api/v1/reports", json=report)


def post_on_own_connection(server: ServerProcess, body: bytes) -> httpx.Response:
    """POST a report body on a connection of its own: when a body is refused unread
    (413) the rest of it is still on the wire, and the server closes that
    connection (``test_connection_still_works_after_a_413``); the shared client's
    connection stays out of it."""
    return httpx.post(f"{server.base_url}/api/v1/reports", content=body,
                      headers={"Content-Type": "application/json"}, timeout=10)


# ---- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["in-process", "bus"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """Both report paths: merged where posted, and through the report bus."""
    # Many registrations from one address in a few seconds: more than a fleet sends.
    with report_path(request.param) as flags, \
            ServerProcess(["--max-body-size", "64KiB", "--registrations-per-address", "100000", *flags]) as process:
        process.wait_ready()
        yield process


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def mesh(client: httpx.Client) -> dict[str, Any]:
    """Three hosts with containers, pods, services and connections to each other;
    returns the full topology right after."""
    now = time.time()
    for index in MESH:
        peers = [p for p in MESH if p != index]
        report = host_report(index, timestamp=now, containers=4, processes=20, connections=12, peers=peers,
                             agent_prefix="mesh")
        response = post_report(client, report)
        assert response.status_code == 202, response.text
    return topology(client)


@pytest.fixture(scope="module")
def registered(client: httpx.Client) -> str:
    """An agent that registered and never reported."""
    agent_id = fresh("registered")
    response = client.post("/api/v1/agents/register", json={"agent_id": agent_id, "hostname": "h"})
    assert response.status_code == 201, response.text
    return agent_id


# ---- register -----------------------------------------------------------------------------


def test_register_returns_201_and_lists_the_agent(client: httpx.Client) -> None:
    agent_id = fresh("reg")
    response = client.post("/api/v1/agents/register",
                           json={"agent_id": agent_id, "hostname": "db-1", "metadata": {"version": "2.1"}})
    assert response.status_code == 201
    assert response.json()["status"] == "registered"
    assert response.json()["message"] == f"Agent {agent_id} registered successfully"
    listed = agents_by_id(client)[agent_id]
    assert listed["hostname"] == "db-1" and listed["metadata"] == {"version": "2.1"}
    assert listed["status"] == "healthy"


def test_register_again_is_201_and_replaces_metadata(client: httpx.Client) -> None:
    agent_id = fresh("rereg")
    for version in ("1.0", "1.1"):
        response = client.post("/api/v1/agents/register", json={"agent_id": agent_id, "metadata": {"v": version}})
        assert response.status_code == 201, response.text
    assert agents_by_id(client)[agent_id]["metadata"] == {"v": "1.1"}


def test_register_without_agent_id_is_400_naming_it(client: httpx.Client) -> None:
    response = client.post("/api/v1/agents/register", json={"hostname": "host-x"})
    assert_error(response, 400, "invalid_registration", "$.agent_id")
    assert error_paths(response) == ["$.agent_id"]


@pytest.mark.parametrize("agent_id", ["bad id!", "-leading-dash", "a/b", "", "x" * 129, "ünicode"])
def test_register_with_bad_agent_id_is_400(client: httpx.Client, agent_id: str) -> None:
    response = client.post("/api/v1/agents/register", json={"agent_id": agent_id})
    assert_error(response, 400, "invalid_registration", "$.agent_id")


def test_register_with_non_string_metadata_is_400_naming_the_key(client: httpx.Client) -> None:
    response = client.post("/api/v1/agents/register", json={"agent_id": fresh("meta"), "metadata": {"cores": 8}})
    assert_error(response, 400, "invalid_registration", "$.metadata")


def test_register_with_non_json_body_is_400_invalid_json(client: httpx.Client) -> None:
    response = client.post("/api/v1/agents/register", content=b"agent_id=agent-1",
                           headers={"Content-Type": "application/json"})
    assert_error(response, 400, "invalid_json")


def test_register_with_empty_body_is_400(client: httpx.Client) -> None:
    response = client.post("/api/v1/agents/register", content=b"", headers={"Content-Type": "application/json"})
    assert_error(response, 400, "empty_body")


def test_register_with_a_list_is_400(client: httpx.Client) -> None:
    response = client.post("/api/v1/agents/register", json=[{"agent_id": "in-a-list"}])
    assert_error(response, 400, "invalid_registration", "must be a JSON object")


# ---- heartbeat and config -------------------------------------------------------------------


def test_heartbeat_of_known_agent_is_200_and_shows_in_the_list(client: httpx.Client) -> None:
    agent_id = fresh("beating")
    assert client.post("/api/v1/agents/register", json={"agent_id": agent_id}).status_code == 201
    assert agents_by_id(client)[agent_id]["last_heartbeat"] is None
    response = client.post(f"/api/v1/agents/heartbeat/{agent_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    at = parse_rfc3339(body["timestamp"])
    assert abs((datetime.now(UTC) - at).total_seconds()) < 3600  # the server's clock, not a fixed date
    assert agents_by_id(client)[agent_id]["last_heartbeat"] == body["timestamp"]


def test_heartbeat_accepts_the_optional_body(client: httpx.Client, registered: str) -> None:
    for timestamp in ("2025-10-13T00:00:00Z", "0001-01-01T00:00:00Z", 1760313600):  # not read: any will do
        response = client.post(f"/api/v1/agents/heartbeat/{registered}",
                                json={"agent_id": registered, "timestamp": timestamp})
        assert response.status_code == 200 and response.json()["status"] == "ok"


@pytest.mark.parametrize(("body", "code", "path"), [
    ([], "invalid_body", "$"), ("x", "invalid_body", "$"), (0, "invalid_body", "$"), (None, "invalid_body", "$"),
    ({"agent_id": 5}, "invalid_heartbeat", "$.agent_id"),
    ({"agent_id": "someone-else"}, "invalid_heartbeat", "$.agent_id"),
])
def test_a_heartbeat_body_is_checked_and_its_bad_field_named(client: httpx.Client, registered: str,
                                                              body: object, code: str, path: str) -> None:
    response = client.post(f"/api/v1/agents/heartbeat/{registered}", content=json.dumps(body),
                           headers={"Content-Type": "application/json"})
    error = assert_error(response, 400, code, path)
    assert error["message"].startswith(path)


def test_heartbeat_of_unknown_agent_is_404(client: httpx.Client) -> None:
    response = client.post("/api/v1/agents/heartbeat/nobody-here")
    error = assert_error(response, 404, "agent_not_found", "nobody-here")
    assert error["details"] == {"agent_id": "nobody-here"}


def test_config_of_known_agent(client: httpx.Client, registered: str) -> None:
    response = client.get(f"/api/v1/agents/config/{registered}")
    assert response.status_code == 200
    config = response.json()
    assert config["agent_id"] == registered
    assert config["report_interval_seconds"] > 0
    assert config["max_report_bytes"] == LIMIT
    assert "gzip" in config["compression"]


def test_config_of_unknown_agent_is_404(client: httpx.Client) -> None:
    assert_error(client.get("/api/v1/agents/config/nobody-here"), 404, "agent_not_found", "nobody-here")


# ---- reports: acceptance ------------------------------------------------------------------


def test_report_from_unknown_agent_registers_it(client: httpx.Client) -> None:
    agent_id = fresh("unregistered")
    response = post_report(client, minimal_report(agent_id))
    assert response.status_code == 202
    assert response.json()["status"] == "accepted" and response.json()["agent_id"] == agent_id
    listed = agents_by_id(client)[agent_id]
    assert listed["reports_received"] == 1 and listed["last_report_at"] is not None
    assert listed["hostname"] == f"{agent_id}-host"
    assert client.post(f"/api/v1/agents/heartbeat/{agent_id}").status_code == 200


def test_gzip_report_is_accepted(client: httpx.Client) -> None:
    agent_id = fresh("gzipped")
    report = host_report(40, timestamp=time.time(), containers=2, processes=5, agent_prefix=agent_id)
    response = client.post("/api/v1/reports", content=gzip.compress(json.dumps(report).encode()),
                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status_code == 202, response.text
    latest = client.get(f"/api/v1/query/agents/{report['agent_id']}/latest")
    assert latest.status_code == 200
    assert len(latest.json()["report"]["processes_info"]["processes"]) == 5


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_an_agents_latest_report_is_compressed_as_the_client_asks(client: httpx.Client, encoding: str) -> None:
    """A busy host's latest report (8 MB) was sent whole whatever the client accepted."""
    agent_id = fresh(f"latest-{encoding}")
    report = host_report(41, timestamp=time.time(), containers=2, processes=50, agent_prefix=agent_id)
    assert post_report(client, report).status_code == 202
    latest = client.get(f"/api/v1/query/agents/{report['agent_id']}/latest", headers={"Accept-Encoding": encoding})
    assert latest.status_code == 200 and latest.headers["Content-Encoding"] == encoding
    assert int(latest.headers["Content-Length"]) < len(json.dumps(report)) / 3  # the wire, before httpx decodes
    assert len(latest.json()["report"]["processes_info"]["processes"]) == 50


def test_report_with_unknown_fields_is_accepted(client: httpx.Client) -> None:
    agent_id = fresh("newer-probe")
    report = minimal_report(agent_id, gpu_info={"count": 2}, host_info={"hostname": "h", "tpm": True,
                                                                      "cpu_info": {"cores": 4, "flags": ["sse"]}})
    response = post_report(client, report)
    assert response.status_code == 202, response.text
    latest = client.get(f"/api/v1/query/agents/{agent_id}/latest").json()["report"]
    assert latest["host_info"]["cpu_info"]["cores"] == 4


def test_older_report_does_not_replace_the_newer_one(client: httpx.Client) -> None:
    agent_id = fresh("reordered")
    now = time.time()
    newer = minimal_report(agent_id, timestamp=now, host_info={"cpu_info": {"usage": 40.0}})
    older = minimal_report(agent_id, timestamp=now - 60, host_info={"cpu_info": {"usage": 10.0}})
    assert post_report(client, newer).status_code == 202
    assert post_report(client, older).status_code == 202
    host = topology(client, "hosts")["nodes"][f"host:{agent_id}-host"]
    assert host["metrics"]["cpu_usage"] == 40.0
    assert host["last_seen"] == iso(now)
    latest = client.get(f"/api/v1/query/agents/{agent_id}/latest").json()["report"]
    assert latest["host_info"]["cpu_info"]["usage"] == 40.0
    assert agents_by_id(client)[agent_id]["reports_received"] == 2


def test_older_report_does_not_overwrite_the_agents_time_series(client: httpx.Client) -> None:
    agent_id = fresh("late-series")
    now = time.time()
    assert post_report(client, minimal_report(agent_id, timestamp=now,
                                              host_info={"cpu_info": {"usage": 40.0}})).status_code == 202
    assert post_report(client, minimal_report(agent_id, timestamp=now - 60,
                                              host_info={"cpu_info": {"usage": 10.0}})).status_code == 202
    host_history = client.get(f"/api/v1/query/nodes/host:{agent_id}-host").json()["metrics_history"]["points"]
    assert host_history[-1]["cpu_usage"] == 40.0  # the host node's history keeps the newer values ...
    points = client.get(f"/api/v1/query/agents/{agent_id}/timeseries").json()["points"]
    assert points[-1]["cpu_usage"] == 40.0  # ... and so should the agent's


# ---- reports: size limits and encodings -------------------------------------------------------


def test_report_over_the_size_limit_is_413(server: ServerProcess, client: httpx.Client) -> None:
    report = host_report(41, timestamp=time.time(), processes=300, connections=300, agent_prefix=fresh("big"))
    body = json.dumps(report).encode()
    assert len(body) > LIMIT
    response = post_on_own_connection(server, body)
    assert_error(response, 413, "payload_too_large", str(LIMIT))
    assert_error(client.get(f"/api/v1/query/agents/{report['agent_id']}/latest"), 404, "agent_not_found")


def test_connection_still_works_after_a_413(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.base_url, timeout=15) as http:  # a hang, not slowness, fails it
        response = http.post("/api/v1/reports", content=b"x" * (16 * LIMIT),
                             headers={"Content-Type": "application/json"})
        assert_error(response, 413, "payload_too_large")
        assert http.get("/health").status_code == 200


def test_gzip_bomb_is_413(client: httpx.Client) -> None:
    agent_id = fresh("bomb")
    inflated = json.dumps(minimal_report(agent_id, padding="a" * (16 * LIMIT))).encode()
    bomb = gzip.compress(inflated)
    assert len(bomb) < LIMIT < len(inflated)
    response = client.post("/api/v1/reports", content=bomb,
                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert_error(response, 413, "payload_too_large", str(LIMIT))
    assert_error(client.get(f"/api/v1/query/agents/{agent_id}/latest"), 404, "agent_not_found")


@pytest.mark.parametrize("body", [b"this is not gzip", gzip.compress(b'{"agent_id": "x"}')[:-6], b"",
                                  gzip.compress(b'{"agent_id": "x"}') + b"trailing garbage"],
                         ids=["garbage", "truncated", "empty", "trailing-garbage"])
def test_invalid_gzip_is_400(client: httpx.Client, body: bytes) -> None:
    response = client.post("/api/v1/reports", content=body, headers={"Content-Encoding": "gzip"})
    assert_error(response, 400, "invalid_gzip")


@pytest.mark.parametrize(("path", "status"), [("/api/v1/report", 404), ("/health", 405)])
def test_connection_still_works_after_refusing_a_large_body(server: ServerProcess, path: str, status: int) -> None:
    body = b"x" * (8 * 1024 * 1024)  # a probe posting its report to the wrong place
    with httpx.Client(base_url=server.base_url, timeout=15) as http:  # a hang, not slowness, fails it
        for _attempt in range(3):
            assert http.post(path, content=body).status_code == status
            assert http.get("/health").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/ping", "/api/v1/openapi.json"])
def test_connection_still_works_after_answering_without_reading_the_body(server: ServerProcess, path: str) -> None:
    """A success that never read the body closes its connection too: what is
    left of the body is still on the wire, and the next request sent on that
    connection would be lost."""
    body = b"[" * 300_000
    with httpx.Client(base_url=server.base_url, timeout=15) as http:  # a hang, not slowness, fails it
        for _attempt in range(3):
            response = http.request("GET", path, content=body)
            assert response.status_code == 200, response.text
            assert response.headers.get("connection") == "close"
            assert http.get("/health").status_code == 200


def test_multi_member_gzip_report_is_accepted(client: httpx.Client) -> None:
    agent_id = fresh("multi-member")
    text = json.dumps(minimal_report(agent_id)).encode()
    body = gzip.compress(text[:20]) + gzip.compress(text[20:])
    assert gzip.decompress(body) == text
    response = client.post("/api/v1/reports", content=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 202, response.text


@pytest.mark.parametrize("encoding", ["br", "deflate", "gzip, br"])
def test_unsupported_content_encoding_is_415(client: httpx.Client, encoding: str) -> None:
    response = client.post("/api/v1/reports", content=json.dumps(minimal_report(fresh("enc"))).encode(),
                           headers={"Content-Encoding": encoding})
    assert_error(response, 415, "unsupported_encoding", encoding)


# ---- reports: strict validation ----------------------------------------------------------------


def _with(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(report: dict[str, Any]) -> None:
        target = report
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda report: report.pop(key)


INVALID = {
    "cores-as-string": (_with(["host_info", "cpu_info", "cores"], "5"), "$.host_info.cpu_info.cores"),
    "hostname-null": (_with(["hostname"], None), "$.hostname"),
    "negative-pid": (_with(["processes_info", "processes", 0, "pid"], -1), "$.processes_info.processes[0].pid"),
    "negative-rss": (_with(["processes_info", "processes", 1, "memory_rss_bytes"], -5),
                     "$.processes_info.processes[1].memory_rss_bytes"),
    "usage-over-100": (_with(["host_info", "cpu_info", "usage"], 250.0), "$.host_info.cpu_info.usage"),
    "bool-as-number": (_with(["host_info", "memory_info", "total_mb"], True), "$.host_info.memory_info.total_mb"),
    "bad-timestamp": (_with(["timestamp"], "yesterday"), "$.timestamp"),
    "no-timestamp": (_without("timestamp"), "$.timestamp"),
    "no-agent-id": (_without("agent_id"), "$.agent_id"),
    "unknown-state": (_with(["docker_info", "containers", 0, "state"], "flying"), "$.docker_info.containers[0].state"),
    "port-out-of-range": (_with(["network_info", "connections", 0, "local_port"], 70000),
                          "$.network_info.connections[0].local_port"),
    "label-not-a-string": (_with(["docker_info", "containers", 0, "labels"], {"tier": 1}),
                           "$.docker_info.containers[0].labels"),
    "section-as-string": (_with(["host_info"], "linux"), "$.host_info"),
    "list-as-object": (_with(["processes_info", "processes"], {"pid": 1}), "$.processes_info.processes"),
}


@pytest.mark.parametrize("case", INVALID)
def test_invalid_field_is_400_naming_its_path(client: httpx.Client, case: str) -> None:
    mutate, path = INVALID[case]
    agent_id = fresh("invalid")
    report = host_report(42, timestamp=time.time(), containers=2, processes=3, connections=3, agent_prefix=agent_id)
    mutate(report)
    response = post_report(client, report)
    assert_error(response, 400, "invalid_report", path)
    assert any(p.startswith(path) for p in error_paths(response)), error_paths(response)
    # A rejected report changes nothing: its agent stays unknown.
    assert_error(client.get(f"/api/v1/agents/config/{agent_id}-42"), 404, "agent_not_found")


@pytest.mark.parametrize(("value", "says"), [(5.0, "must be an integer, got the number 5.0"),
                                            (1e19, "must be an integer between -2^63 and 2^63-1")])
def test_an_integer_field_given_a_float_says_which_was_wrong(client: httpx.Client, value: float, says: str) -> None:
    report = minimal_report(fresh("integers"), host_info={"cpu_info": {"cores": value}})
    assert_error(post_report(client, report), 400, "invalid_report", "$.host_info.cpu_info.cores", says)


def test_every_bad_field_is_listed(client: httpx.Client) -> None:
    report = minimal_report(fresh("many-problems"), hostname=5,
                            host_info={"cpu_info": {"cores": "5", "usage": 200}},
                            processes_info={"processes": [{"pid": 0}, {"pid": 7, "threads": -1}]})
    response = post_report(client, report)
    error = assert_error(response, 400, "invalid_report", "$.hostname", "and 4 more")
    assert set(error_paths(response)) == {
        "$.hostname", "$.host_info.cpu_info.cores", "$.host_info.cpu_info.usage",
        "$.processes_info.processes[0].pid", "$.processes_info.processes[1].threads",
    }
    assert error["details"]["total"] == 5


def test_a_report_dated_ahead_of_the_server_clock_is_400_and_does_not_hide_the_real_ones(client: httpx.Client) -> None:
    agent_id = fresh("clock")
    now = time.time()
    response = post_report(client, minimal_report(agent_id, timestamp=now + 3600, hostname="from-the-future"))
    assert_error(response, 400, "invalid_report", "$.timestamp", "ahead of the server's clock")
    assert error_paths(response) == ["$.timestamp"]
    # A little skew is fine; and the agent's real reports are what counts.
    assert post_report(client, minimal_report(agent_id, timestamp=now + 60, hostname="skewed")).status_code == 202
    assert post_report(client, minimal_report(agent_id, timestamp=now + 120, hostname="real")).status_code == 202
    wait_for(lambda: agents_by_id(client).get(agent_id, {}).get("hostname") == "real", what="the newest report")


@pytest.mark.parametrize("stamp", ["1969-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])
def test_a_report_dated_before_1970_is_400(client: httpx.Client, stamp: str) -> None:
    response = post_report(client, {**minimal_report(fresh("epoch")), "timestamp": stamp})
    assert_error(response, 400, "invalid_report", "$.timestamp", "1970")


@pytest.mark.parametrize("body", [b"[]", b'"report"', b"42", b"null"])
def test_report_that_is_not_an_object_is_400(client: httpx.Client, body: bytes) -> None:
    response = client.post("/api/v1/reports", content=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "invalid_report", "must be a JSON object")
    assert error_paths(response) == ["$"]


# ---- topology --------------------------------------------------------------------------------


@pytest.mark.parametrize("view", VIEWS)
def test_topology_view_has_only_its_own_kind(client: httpx.Client, mesh: dict[str, Any], view: str) -> None:
    shown = topology(client, view)
    kind = VIEW_TYPE[view]
    assert shown["view"] == view
    assert shown["nodes"], f"the {view} view is empty"
    assert {node["type"] for node in shown["nodes"].values()} == {kind}
    assert all(node_id.startswith(f"{kind}:") for node_id in shown["nodes"])
    everything = {node_id for node_id, node in mesh["nodes"].items() if node["type"] == kind}
    assert everything <= shown["nodes"].keys()
    for edge in shown["edges"].values():
        assert edge["source"] in shown["nodes"] and edge["target"] in shown["nodes"], edge
        assert edge["connections"] >= 1


def test_hosts_view_connects_the_hosts_that_talk(client: httpx.Client, mesh: dict[str, Any]) -> None:
    edges = topology(client, "hosts")["edges"]
    pairs = {(e["source"], e["target"]) for e in edges.values()}
    expected = {(f"host:host-{a}", f"host:host-{b}") for a in MESH for b in MESH if a != b}
    assert expected <= pairs


def test_processes_view_connects_processes_across_hosts(client: httpx.Client, mesh: dict[str, Any]) -> None:
    edges = topology(client, "processes")["edges"].values()
    hosts = {(e["source"].split(":")[1], e["target"].split(":")[1]) for e in edges}
    assert ("host-1", "host-2") in hosts and ("host-2", "host-1") in hosts


def test_unknown_view_is_400_naming_view(client: httpx.Client) -> None:
    error = assert_error(client.get("/api/v1/query/topology", params={"view": "racks"}), 400,
                         "invalid_parameter", "view", "racks")
    assert error["details"]["parameter"] == "view"
    assert set(error["details"]["allowed"]) == {"all", *VIEWS}


def test_every_answer_says_nosniff_so_an_echoing_error_is_never_read_as_a_page(client: httpx.Client) -> None:
    refused = client.get("/api/v1/query/topology", params={"view": "<img src=x onerror=alert(1)>"})
    assert refused.status_code == 400 and refused.headers["content-type"].startswith("application/json")
    assert refused.headers["x-content-type-options"] == "nosniff"
    assert client.get("/health").headers["x-content-type-options"] == "nosniff"


def test_view_all_is_the_whole_topology_as_on_the_live_view(client: httpx.Client, mesh: dict[str, Any]) -> None:
    """The live view took ``view=all``, the GET answered it 400."""
    assert topology(client, "all")["nodes"].keys() == topology(client)["nodes"].keys()


def test_topology_version_changes_only_with_the_topology(client: httpx.Client, mesh: dict[str, Any]) -> None:
    first = topology(client)["version"]
    assert topology(client)["version"] == first
    assert post_report(client, minimal_report(fresh("versioned"))).status_code == 202
    assert topology(client)["version"] > first


# ---- node details ------------------------------------------------------------------------------


def _node(client: httpx.Client, node_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/query/nodes/{node_id}")
    assert response.status_code == 200, response.text
    details = response.json()
    assert details["node"]["id"] == node_id
    return details  # type: ignore[no-any-return]


def test_host_details_list_its_containers_and_processes(client: httpx.Client, mesh: dict[str, Any]) -> None:
    details = _node(client, "host:host-1")
    assert details["node"]["type"] == "host" and details["parents"] == []
    children = {child["id"] for child in details["children"]}
    expected = {node_id for node_id, node in mesh["nodes"].items()
                if node["parent"] == "host:host-1" and node["type"] in ("container", "process")}
    assert expected and expected <= children
    assert any(node_id.startswith("container:") for node_id in children)
    assert any(node_id.startswith("process:host-1:") for node_id in children)
    history = details["metrics_history"]
    assert history["resolution_seconds"] > 0
    assert history["points"] and history["points"][-1]["cpu_usage"] == 25.0


def test_container_details_have_host_parent_and_process_children(client: httpx.Client, mesh: dict[str, Any]) -> None:
    container = next(node for node in mesh["nodes"].values()
                     if node["type"] == "container" and node["host"] == "host:host-2"
                     and any(n["parent"] == node["id"] for n in mesh["nodes"].values()))
    details = _node(client, container["id"])
    assert [parent["id"] for parent in details["parents"]] == ["host:host-2"]
    processes = {node_id for node_id, node in mesh["nodes"].items()
                 if node["type"] == "process" and node["parent"] == container["id"]}
    assert {child["id"] for child in details["children"]} == processes
    assert "points" in details["metrics_history"]


def test_process_details_show_the_process_it_talks_to(client: httpx.Client, mesh: dict[str, Any]) -> None:
    edge = next(e for e in topology(client, "processes")["edges"].values()
                if e["source"].split(":")[1] != e["target"].split(":")[1])
    client_side = _node(client, edge["source"])
    outbound = {c["id"]: c for c in client_side["connected"]}
    assert edge["target"] in outbound
    assert "outbound" in outbound[edge["target"]]["directions"]
    server_side = _node(client, edge["target"])
    inbound = {c["id"]: c for c in server_side["connected"]}
    assert "inbound" in inbound[edge["source"]]["directions"]
    assert client_side["metrics_history"]["points"], "a reporting process has metric history"


@pytest.mark.parametrize("path", ["pod:prod/web-1-0", "pod%3Aprod%2Fweb-1-0"], ids=["raw", "percent-encoded"])
def test_pod_details_with_slash_in_the_id(client: httpx.Client, mesh: dict[str, Any], path: str) -> None:
    response = client.get(f"/api/v1/query/nodes/{path}")
    assert response.status_code == 200, response.text
    details = response.json()
    assert details["node"]["id"] == "pod:prod/web-1-0"
    assert details["node"]["type"] == "pod"
    assert details["node"]["metadata"]["namespace"] == "prod"
    assert [parent["id"] for parent in details["parents"]] == ["host:host-1"]


def test_node_id_with_colons_and_slashes_from_a_host_name(client: httpx.Client) -> None:
    hostname = "rack/7:slot 3"
    assert post_report(client, minimal_report(fresh("odd-name"), hostname=hostname)).status_code == 202
    response = client.get("/api/v1/query/nodes/host:rack/7:slot%203")
    assert response.status_code == 200, response.text
    assert response.json()["node"]["label"] == hostname


def test_unknown_node_is_404(client: httpx.Client) -> None:
    error = assert_error(client.get("/api/v1/query/nodes/host:no-such-host"), 404, "node_not_found",
                         "host:no-such-host")
    assert error["details"] == {"node_id": "host:no-such-host"}
    assert_error(client.get("/api/v1/query/nodes/gizmo:thing"), 404, "node_not_found")


def test_node_details_with_bad_duration_is_400(client: httpx.Client, mesh: dict[str, Any]) -> None:
    response = client.get("/api/v1/query/nodes/host:host-1", params={"duration": "soon"})
    assert_error(response, 400, "invalid_parameter", "duration")


# ---- latest report and time series --------------------------------------------------------------


def test_latest_of_unknown_agent_is_404(client: httpx.Client) -> None:
    assert_error(client.get("/api/v1/query/agents/nobody-here/latest"), 404, "agent_not_found", "nobody-here")


def test_latest_of_agent_without_report_is_404_no_report(client: httpx.Client, registered: str) -> None:
    error = assert_error(client.get(f"/api/v1/query/agents/{registered}/latest"), 404, "no_report", registered)
    assert error["details"] == {"agent_id": registered}


@pytest.mark.parametrize("duration", ["banana", "0s", "-5m", "60", "721h"])
def test_timeseries_with_bad_duration_is_400(client: httpx.Client, registered: str, duration: str) -> None:
    response = client.get(f"/api/v1/query/agents/{registered}/timeseries", params={"duration": duration})
    error = assert_error(response, 400, "invalid_parameter", "duration")
    assert error["details"]["parameter"] == "duration"


def test_timeseries_of_unknown_agent_is_404(client: httpx.Client) -> None:
    assert_error(client.get("/api/v1/query/agents/nobody-here/timeseries"), 404, "agent_not_found")


def test_timeseries_defaults_to_one_hour_and_holds_reported_metrics(client: httpx.Client) -> None:
    agent_id = fresh("series")
    report = minimal_report(agent_id, host_info={"cpu_info": {"usage": 12.5}}, docker_info={"containers": []})
    assert post_report(client, report).status_code == 202
    body = client.get(f"/api/v1/query/agents/{agent_id}/timeseries").json()
    assert body["duration"] == "1h" and body["count"] == len(body["points"]) == 1
    assert body["points"][0]["cpu_usage"] == 12.5 and body["points"][0]["containers"] == 0


# ---- stats and metrics ------------------------------------------------------------------------


def test_stats_agree_with_the_lists(client: httpx.Client, mesh: dict[str, Any]) -> None:
    shown = topology(client)
    response = client.get("/api/v1/query/stats")
    assert response.status_code == 200
    stats = response.json()
    listed = agents_by_id(client)
    assert stats["agents"] == len(listed)
    assert {f"mesh-{i}" for i in MESH} <= listed.keys()
    assert stats["topology"]["nodes"] == len(shown["nodes"]) > 0
    assert stats["topology"]["version"] == shown["version"]
    by_type = stats["topology"]["nodes_by_type"]
    for kind in VIEW_TYPE.values():
        if kind == "process_group":  # not in the whole topology: a view of its processes
            assert by_type[kind] == len(topology(client, "processes-by-name")["nodes"]) > 0
        else:
            assert by_type[kind] == sum(1 for node in shown["nodes"].values() if node["type"] == kind)
    assert stats["websocket_clients"] == 0
    assert stats["storage"]["metric_points"] > 0


def test_stats_count_a_report_as_soon_as_it_is_accepted(client: httpx.Client) -> None:
    def hosts() -> int:
        response = client.get("/api/v1/query/stats")
        assert response.status_code == 200
        return response.json()["topology"]["nodes_by_type"]["host"]  # type: ignore[no-any-return]

    before = hosts()
    assert post_report(client, minimal_report(fresh("counted-host"))).status_code == 202
    assert hosts() == before + 1


def test_metrics_exposition(client: httpx.Client, mesh: dict[str, Any]) -> None:
    shown = topology(client)
    samples = metric_samples(client)
    names = {name for name, _labels in samples}
    for name in ("app_agents_total", "app_reports_received_total", "app_websocket_clients", "app_topology_nodes"):
        assert name in names, name
    assert samples[("app_agents_total", ())] == len(agents_by_id(client))
    assert samples[("app_topology_nodes", ())] == len(shown["nodes"])
    assert samples[("app_websocket_clients", ())] == 0
    assert samples[("app_actor_mailbox_depth", (("actor_type", "TopologyActor"),))] >= 0
    commits = samples[("app_store_commit_seconds_count", ())]  # the store's commits, timed
    assert commits == samples[("app_store_commit_seconds_bucket", (("le", "+Inf"),))] >= 0
    report_buckets = [labels for name, labels in samples
                      if name == "app_http_request_duration_seconds_bucket"
                      and ("route", "/api/v1/reports") in labels and ("status", "202") in labels]
    assert report_buckets


def test_reports_received_counts_exactly_the_accepted_reports(server: ServerProcess,
                                                              client: httpx.Client) -> None:
    key = ("app_reports_received_total", ())
    before = metric_samples(client)[key]
    statuses = [
        post_report(client, minimal_report(fresh("counted"))).status_code,
        post_report(client, minimal_report(fresh("counted"), hostname=None)).status_code,
        client.post("/api/v1/reports", content=b"{", headers={"Content-Type": "application/json"}).status_code,
        post_on_own_connection(server, json.dumps(minimal_report(fresh("counted"), padding="x" * 2 * LIMIT)).encode())
        .status_code,
        post_report(client, minimal_report(fresh("counted"))).status_code,
        client.post("/api/v1/reports", content=gzip.compress(json.dumps(minimal_report(fresh("counted"))).encode()),
                    headers={"Content-Encoding": "gzip"}).status_code,
    ]
    assert statuses == [202, 400, 400, 413, 202, 202]
    assert metric_samples(client)[key] - before == statuses.count(202)


# ---- servers of their own: agent limit, shutdown, cleanup ------------------------------------------


def test_agents_beyond_max_agents_get_503() -> None:
    with ServerProcess(["--max-agents", "2"]) as server, \
            httpx.Client(base_url=server.base_url, timeout=10) as http:
        assert post_report(http, minimal_report("first")).status_code == 202
        assert http.post("/api/v1/agents/register", json={"agent_id": "second"}).status_code == 201
        for response in (post_report(http, minimal_report("third")),
                         http.post("/api/v1/agents/register", json={"agent_id": "fourth"})):
            assert_error(response, 503, "too_many_agents", "2")
            assert int(response.headers["Retry-After"]) > 0
        assert post_report(http, minimal_report("first")).status_code == 202  # known agents go on
        assert set(agents_by_id(http)) == {"first", "second"}


def test_large_reports_get_the_same_answers_as_small_ones() -> None:
    """Reports over 256 KiB are decoded and partitioned in a worker thread
    (``_reports.OFF_LOOP_BYTES``): accepted ones show up alike, bad ones are
    refused alike, naming the field."""
    # 3,000 processes are over the default memory budget per agent (~10 MiB estimated).
    with ServerProcess(["--agent-memory-budget", "64MiB"]) as server, \
            httpx.Client(base_url=server.base_url, timeout=30) as http:
        now = time.time()
        report = host_report(1, timestamp=now, containers=20, processes=3_000, agent_prefix="big")
        body = json.dumps(report).encode()
        assert len(body) > 2 * 256 * 1024
        response = http.post("/api/v1/reports", content=gzip.compress(body),
                             headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert response.status_code == 202, response.text
        processes = [n for n in topology(http, "processes")["nodes"].values() if n["type"] == "process"]
        assert len(processes) == 3_000
        latest = http.get(f"/api/v1/query/agents/{report['agent_id']}/latest").json()["report"]
        assert latest == json.loads(body)

        bad = json.loads(body)
        bad["processes_info"]["processes"][2500]["pid"] = 0
        response = http.post("/api/v1/reports", json=bad)
        assert_error(response, 400, "invalid_report", "$.processes_info.processes[2500].pid")
        assert error_paths(response) == ["$.processes_info.processes[2500].pid"]
        ahead = {**json.loads(body), "timestamp": iso(now + 3600)}
        assert_error(http.post("/api/v1/reports", json=ahead), 400, "invalid_report", "$.timestamp")
        assert_error(http.post("/api/v1/reports", content=body[:-1000], headers={"Content-Type": "application/json"}),
                     400, "invalid_json")
        assert http.get("/health").status_code == 200
    assert " ERROR " not in server.stderr() and "Traceback" not in server.stderr(), server.stderr()[-3000:]


_FINAL = re.compile(r"final topology: version \d+, \d+ nodes from (\d+) agents")


def test_graceful_shutdown_merges_every_accepted_report() -> None:
    agents = 20
    with ServerProcess() as server:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            for index in range(agents):
                report = minimal_report(f"shutdown-{index}", host_info={"cpu_info": {"usage": float(index)}})
                response = post_report(http, report)
                assert response.status_code == 202, response.text
        assert server.stop(signal.SIGTERM) == 0
        log = server.stderr()
    finals = _FINAL.findall(log)
    assert finals == [str(agents)], log
    assert "stopped cleanly" in log and "Traceback" not in log


def test_cleanup_removes_hosts_that_stopped_reporting() -> None:
    with ServerProcess(["--cleanup-interval", "1s", "--stale-node-threshold", "1s"]) as server:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            report = minimal_report("fading", hostname="fading-host")
            assert post_report(http, report).status_code == 202

            def gone() -> bool:
                return "host:fading-host" not in topology(http)["nodes"]

            wait_for(gone, timeout=15, what="host:fading-host to be cleaned up")
            wait_for(lambda: "cleanup: removed 1 stale agents" in server.stderr(), timeout=5,
                     what="the cleanup log line")
            assert _stats_agents(http) == 0
            assert_error(http.get("/api/v1/query/nodes/host:fading-host"), 404, "node_not_found")

            # The agent comes back: its next report (same timestamp, resent) shows it again.
            def back() -> bool:
                assert post_report(http, report).status_code == 202
                return "host:fading-host" in topology(http)["nodes"]

            wait_for(back, timeout=15, what="host:fading-host to come back")
        assert "Traceback" not in server.stderr()


def _stats_agents(http: httpx.Client) -> int:
    return http.get("/api/v1/query/stats").json()["topology"]["agents"]  # type: ignore[no-any-return]


def test_a_duration_of_thousands_of_digits_is_said_to_be_too_long_not_what_python_thinks_of_it(
        client: httpx.Client, registered: str) -> None:
    response = client.get(f"/api/v1/query/agents/{registered}/timeseries", params={"duration": "9" * 5000 + "s"})
    error = assert_error(response, 400, "invalid_parameter", "duration")
    assert "too long to be a duration (5001 characters, at most 64)" in error["message"]
    assert "int_max_str_digits" not in error["message"] and "4300" not in error["message"]


def test_made_up_http_methods_are_counted_as_other_not_each_a_series_of_its_own(client: httpx.Client) -> None:
    for index in range(5):
        answer = client.request(f"MADEUP{index}X" * 8, "/api/v1/ping")
        assert answer.status_code in (405, 501), answer.text
    methods = {dict(labels).get("method") for name, labels in metric_samples(client)
               if name == "app_http_request_duration_seconds_count"}
    assert not any(method and method.startswith("MADEUP") for method in methods)
    assert "other" in methods and "GET" in methods


def test_api_answers_are_never_kept_by_a_browsers_cache(client: httpx.Client) -> None:
    """A signed-in UI's answers were kept in the browser's cache: after signing
    out, a script of the page read ``/api/v1/users/me`` back with no token."""
    for path in ("/api/v1/query/stats", "/api/v1/query/topology", "/api/v1/users/me", "/prometheus/api/v1/labels"):
        assert client.get(path).headers["cache-control"] == "no-store", path
    assert client.get("/health", headers={"Authorization": "Bearer x"}).headers["cache-control"] == "no-store"
    assert "no-store" not in client.get("/health").headers.get("cache-control", "")
    assert "strict-transport-security" not in client.get("/health").headers  # plain HTTP: said only over TLS
    assert client.get("/").headers["cache-control"] == "no-cache"  # the UI's own, as it was
