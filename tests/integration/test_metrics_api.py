"""The metrics API against real servers: agents write line protocol and JSON,
users read with the Prometheus HTTP API, through both backends (the embedded
engine and VictoriaMetrics at --metrics-url); tenants never see each other's
series whatever the matchers; limits; promtool against /prometheus."""

from __future__ import annotations

import itertools
import math
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.free_port import free_port
from tests.metrics_clients import BACKENDS, Tenant, metrics_server, new_tenant
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually
from trioscope.domain.topology import host_id, node_scope


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with metrics_server(request.param) as process:
        yield process


@pytest.fixture(scope="module")
def embedded() -> Iterator[ServerProcess]:
    with ServerProcess() as process:
        yield process


@pytest.fixture(scope="module")
def limited() -> Iterator[ServerProcess]:
    with ServerProcess(["--metrics-max-points-per-request", "5", "--metrics-max-series-per-deployment", "3",
                        "--metrics-max-label-value-bytes", "16", "--metrics-max-query-samples", "1000"]) as process:
        yield process


def _result(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def _query(tenant: Tenant, client: httpx.AsyncClient, expr: str, at: float,
                 path: str = "/api/v1/metrics/query") -> list[dict[str, Any]]:
    return _result(await tenant.read(client, path, query=expr, time=str(at)))


# ---- write, then read back -----------------------------------------------------------------------

async def test_line_protocol_round_trip_with_the_servers_labels(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        tenant = await new_tenant(client, server)
        at = int(time.time()) - 60
        body = (f"# a comment, then a blank line\n\n"
                f"http_requests,code=200,tenant=forged,deployment_hash=forged total=10i {at}\n"
                f"http_requests,code=500 total=1i,ok=false {at}\n").encode()
        response = await tenant.write(client, body, query="?precision=s")
        assert response.status_code == 204, response.text
        assert "content-type" not in response.headers, dict(response.headers)  # no content, no type

        async def found() -> list[dict[str, Any]]:
            return await _query(tenant, client, "http_requests_total", at)

        result = await eventually(found)
        metrics = sorted((r["metric"] for r in result), key=lambda m: m["code"])
        assert metrics[0] == {"__name__": "http_requests_total", "code": "200", "tenant": tenant.name,
                              "deployment_hash": tenant.agent.deployment_hash, "exported_tenant": "forged",
                              "exported_deployment_hash": "forged"}
        assert metrics[1]["tenant"] == tenant.name
        assert sorted(float(r["value"][1]) for r in result) == [1.0, 10.0]
        booleans = await _query(tenant, client, "http_requests_ok", at)
        assert [r["value"][1] for r in booleans] == ["0"]


async def test_json_write_and_range_query(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        tenant = await new_tenant(client, server)
        start = (int(time.time()) // 15) * 15 - 300
        points = [{"metric": "queue_depth", "labels": {"queue": "q1"}, "value": float(i), "timestamp": start + 15 * i}
                  for i in range(10)]
        response = await tenant.write(client, __import__("orjson").dumps({"points": points}), "application/json")
        assert response.status_code == 204, response.text

        async def found() -> list[dict[str, Any]]:
            result = _result(await tenant.read(client, "/api/v1/metrics/query_range", query="queue_depth",
                                               start=str(start), end=str(start + 135), step="15s"))
            return result if result and len(result[0]["values"]) == 10 else []

        (series,) = await eventually(found)
        assert series["metric"]["queue"] == "q1"
        assert [float(v) for _, v in series["values"]] == [float(i) for i in range(10)]
        assert [t for t, _ in series["values"]] == [start + 15 * i for i in range(10)]


def _left_out(server: ServerProcess) -> dict[str, float]:
    text = httpx.get(f"{server.base_url}/metrics").text
    return {reason: sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                        if line.startswith(f'trioscope_metric_samples_left_out_total{{reason="{reason}"'))
            for reason in ("too_old", "superseded")}


async def test_samples_the_embedded_engine_leaves_out_are_counted(embedded: ServerProcess) -> None:
    """A write answered 204 kept one sample per series and 15 s bucket and none
    past the retention, and nothing said how many it left out."""
    async with httpx.AsyncClient() as client:
        tenant = await new_tenant(client, embedded)
        before = _left_out(embedded)
        bucket = (int(time.time()) // 15) * 15 - 60
        points = [{"metric": "gauge_5s", "value": value, "timestamp": bucket + offset}
                  for offset, value in ((0, 1.0), (5, 100.0), (10, 1.0))]
        points.append({"metric": "gauge_5s", "value": 7.0, "timestamp": int(time.time()) - 3 * 86400})
        response = await tenant.write(client, __import__("orjson").dumps({"points": points}), "application/json")
        assert response.status_code == 204, response.text
        after = _left_out(embedded)
    assert (after["superseded"] - before["superseded"], after["too_old"] - before["too_old"]) == (2, 1)


async def test_rate_and_sum_by(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        tenant = await new_tenant(client, server)
        start = (int(time.time()) // 15) * 15 - 600
        lines = [f"reqs,code={code} count={i * (2 if code == '200' else 1)}i {start + 15 * i}"
                 for i in range(20) for code in ("200", "500")]
        assert (await tenant.write(client, "\n".join(lines).encode(), query="?precision=s")).status_code == 204
        at = start + 15 * 19

        async def found() -> list[dict[str, Any]]:
            return await _query(tenant, client, "sum by (code) (rate(reqs_count[2m]))", at)

        result = {r["metric"]["code"]: float(r["value"][1]) for r in await eventually(found)}
        assert result == {"200": pytest.approx(2 / 15), "500": pytest.approx(1 / 15)}


async def test_a_bad_line_is_400_naming_its_number(embedded: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        tenant = await new_tenant(client, embedded)
        response = await tenant.write(client, b"cpu value=1\ncpu value=\ncpu value=3\n")
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid_line_protocol"
        assert error["details"]["line"] == 2
        assert error["message"].startswith("line 2:")
        bad_precision = await tenant.write(client, b"cpu value=1 1", query="?precision=h")
        assert bad_precision.status_code == 400 and "precision" in bad_precision.json()["error"]["message"]
        future = await tenant.write(client, f"cpu value=1 {int(time.time()) + 3600}".encode(), query="?precision=s")
        assert future.status_code == 400 and future.json()["error"]["details"]["line"] == 1
        bad_json = await tenant.write(client, b'{"points": [{"metric": "ok", "value": 1}, {"metric": "a b", "value": 1}]}',
                                      "application/json")
        assert bad_json.status_code == 400
        assert bad_json.json()["error"]["details"]["path"] == "$.points[1].metric"
        assert (await tenant.write(client, b"x", "application/xml")).status_code == 415


async def test_writes_need_the_agents_token_and_signature(embedded: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        tenant = await new_tenant(client, embedded)
        body = b"cpu value=1"
        url = f"{embedded.base_url}/api/v1/metrics/write"
        assert (await client.post(url, content=body)).status_code == 401
        headers = tenant.agent.headers(body)
        headers["X-Agent-Signature"] = tenant.agent.headers(b"other")["X-Agent-Signature"]
        assert (await client.post(url, content=body, headers=headers)).status_code == 401
        user = await client.post(url, content=body, headers=tenant.auth("ADMIN"))
        assert user.status_code == 401


# ---- limits ---------------------------------------------------------------------------------------

async def test_limits_answer_413_and_429_naming_the_config_key(limited: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        tenant = await new_tenant(client, limited)
        too_many = await tenant.write(client, "\n".join(f"m{i} v=1" for i in range(6)).encode())
        assert too_many.status_code == 413
        assert too_many.json()["error"]["code"] == "too_many_points"
        assert too_many.json()["error"]["details"]["config_key"] == "metrics.max_points_per_request"

        long_value = await tenant.write(client, b"m,host=" + b"x" * 17 + b" v=1")
        assert long_value.status_code == 413
        assert long_value.json()["error"]["details"] == {"limit": 16, "config_key": "metrics.max_label_value_bytes",
                                                        "where": "line 1"}

        assert (await tenant.write(client, b"a v=1\nb v=1\nc v=1")).status_code == 204
        assert (await tenant.write(client, b"a v=2\nb v=2")).status_code == 204  # the same series again
        fourth = await tenant.write(client, b"a v=3\nd v=1")
        assert fourth.status_code == 429
        assert fourth.json()["error"]["code"] == "series_limit_reached"
        assert fourth.json()["error"]["details"]["config_key"] == "metrics.max_series_per_deployment"
        # Refused whole: a's third value was not kept either.
        (a,) = await _query(tenant, client, "a_v", time.time())
        assert a["value"][1] == "2"


async def test_an_expensive_or_unsupported_query_is_422_and_bad_promql_400(limited: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        tenant = await new_tenant(client, limited)
        unsupported = await tenant.read(client, "/api/v1/metrics/query", query="topk(3, a_v)")
        assert unsupported.status_code == 422
        assert unsupported.json()["status"] == "error" and unsupported.json()["errorType"] == "execution"
        assert "topk" in unsupported.json()["error"]
        bad = await tenant.read(client, "/api/v1/metrics/query", query="sum(")
        assert bad.status_code == 400 and bad.json()["errorType"] == "bad_data"
        assert (await tenant.write(client, b"a v=1")).status_code == 204
        now = time.time()
        too_fine = await tenant.read(client, "/api/v1/metrics/query_range", query="a_v",
                                     start=str(now - 86400), end=str(now), step="1s")
        assert too_fine.status_code == 400 and "11000 points" in too_fine.json()["error"]
        long = await tenant.read(client, "/api/v1/metrics/query_range", query="sum(a_v)",
                                 start=str(now - 7200), end=str(now), step="1s")
        assert long.status_code == 422 and "metrics.max_query_samples" in long.json()["error"]


async def test_a_query_nested_too_deep_is_400_and_the_store_keeps_its_series(embedded: ServerProcess) -> None:
    """A query the parser would crash the process on (or the evaluator
    overflow Python's recursion with) is bad data; what was written stays."""
    async with httpx.AsyncClient(timeout=30) as client:
        tenant = await new_tenant(client, embedded)
        at = int(time.time()) - 30
        assert (await tenant.write(client, f"kept value=7 {at}".encode(), query="?precision=s")).status_code == 204

        async def kept() -> list[dict[str, Any]]:
            return await _query(tenant, client, "kept_value", at)

        await eventually(kept)
        for path in ("/api/v1/metrics/query", "/api/v1/metrics/query_range"):
            for expr in ("cpu" + " + cpu" * 5000, "cpu" + " + cpu" * 1000, "(" * 1500 + "cpu" + ")" * 1500,
                         "-" * 5000 + "cpu"):
                response = await tenant.read(client, path, query=expr, start=str(at - 60), end=str(at), step="15")
                assert response.status_code == 400, response.text
                assert response.json()["errorType"] == "bad_data" and "at most" in response.json()["error"]
        assert [row["value"][1] for row in await _query(tenant, client, "kept_value", at)] == ["7"]
        assert embedded.proc.poll() is None and "Traceback" not in embedded.stderr()


# ---- tenants ----------------------------------------------------------------------------------------

CRAFTED = [
    '{tenant=~".*"}',  # refused (400) like Prometheus: a selector must not match everything
    '{tenant=~".*", __name__=~".+"}',
    '{tenant=~".+"}',
    '{__name__=~".+"}',
    '{__name__=~"secret.*", tenant!="nobody"}',
    'secret_value or {__name__=~".+", tenant=~".+"}',
    '{__name__="secret_value" or tenant=~".+"}',
    'sum by (tenant) ({__name__=~".+"})',
]


async def test_another_tenants_series_stay_invisible(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        owner, other = await new_tenant(client, server), await new_tenant(client, server)
        at = int(time.time()) - 30
        assert (await owner.write(client, f"secret value=42 {at}".encode(), query="?precision=s")).status_code == 204
        assert (await other.write(client, f"mine value=1 {at}".encode(), query="?precision=s")).status_code == 204

        async def owner_sees_it() -> list[dict[str, Any]]:
            return await _query(owner, client, "secret_value", at)

        await eventually(owner_sees_it)
        for expr, path in itertools.product(CRAFTED, ("/api/v1/metrics/query", "/prometheus/api/v1/query")):
            response = await other.read(client, path, query=expr, time=str(at),
                                        extra_label=f"tenant={owner.name}", **{"extra_filters[]": "{}"})
            if response.status_code == 200:
                for row in response.json()["data"]["result"]:
                    assert row["metric"].get("tenant", other.name) == other.name, (expr, row)
                    # The samples' values, not their times (a unix time may well contain "42").
                    samples = [row["value"]] if "value" in row else row.get("values", [])
                    assert all(value != "42" for _, value in samples), (expr, row)
            else:
                assert response.json()["status"] == "error"
        series = await other.read(client, "/prometheus/api/v1/series", **{"match[]": '{__name__=~".+"}'})
        assert all(s["tenant"] == other.name for s in _result_list(series)), series.text
        values = await other.read(client, "/prometheus/api/v1/label/tenant/values")
        assert _result_list(values) == [other.name]
        names = await other.read(client, "/prometheus/api/v1/label/__name__/values")
        assert "secret_value" not in _result_list(names)


def _result_list(response: httpx.Response) -> list[Any]:
    assert response.status_code == 200, response.text
    data: list[Any] = response.json()["data"]
    return data


async def test_reads_need_a_user_token_and_a_viewer_may_read(embedded: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        tenant = await new_tenant(client, embedded)
        url = f"{embedded.base_url}/api/v1/metrics/query"
        assert (await client.get(url, params={"query": "up"})).status_code == 401
        viewer = await client.get(url, params={"query": "up"}, headers=tenant.auth("VIEWER"))
        assert viewer.status_code == 200 and viewer.json() == {"status": "success",
                                                               "data": {"resultType": "vector", "result": []}}
        form = await client.post(f"{embedded.base_url}/prometheus/api/v1/query", data={"query": "1+1"},
                                 headers=tenant.auth())
        assert form.json()["data"] == {"resultType": "scalar", "result": [form.json()["data"]["result"][0], "2"]}
        agent = await client.get(url, params={"query": "up"}, headers=tenant.agent.headers(b""))
        assert agent.status_code == 401


# ---- promtool ---------------------------------------------------------------------------------------

async def test_promtool_queries_the_prometheus_mount(server: ServerProcess, promtool: str) -> None:
    async with httpx.AsyncClient() as client:
        tenant = await new_tenant(client, server)
        at = (int(time.time()) // 15) * 15 - 120
        lines = "\n".join(f"temperature,room=kitchen celsius={20 + i} {at + 15 * i}" for i in range(5))
        assert (await tenant.write(client, lines.encode(), query="?precision=s")).status_code == 204

        async def written() -> list[dict[str, Any]]:
            return await _query(tenant, client, "temperature_celsius", at + 60)

        await eventually(written)
    token = server.user_token(tenant.user, tenant.name, "VIEWER")
    host = server.base_url.removeprefix("http://")
    # promtool's instant query has no header flag: the token goes as the Basic password in the URL.
    instant = subprocess.run([promtool, "query", "instant", "--time", str(at + 60),
                              f"http://promtool:{token}@{host}/prometheus", "temperature_celsius"],
                             capture_output=True, text=True, timeout=60)
    assert instant.returncode == 0, instant.stderr
    assert 'room="kitchen"' in instant.stdout and "=> 24 @" in instant.stdout, instant.stdout
    ranged = subprocess.run([promtool, "query", "range", "--header", f"Authorization: Bearer {token}",
                             "--start", str(at), "--end", str(at + 60), "--step", "15s",
                             f"{server.base_url}/prometheus", "temperature_celsius"],
                            capture_output=True, text=True, timeout=60)
    assert ranged.returncode == 0, ranged.stderr
    for value in range(20, 25):
        assert f"{value} @[" in ranged.stdout, ranged.stdout


# ---- the server's own node metrics ----------------------------------------------------------------

async def test_a_probes_host_metrics_are_queryable_by_its_deployments_tenant_only(embedded: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        owner, other = await new_tenant(client, embedded), await new_tenant(client, embedded)
        probe = f"probe-{owner.name}"
        report = host_report(0, timestamp=time.time(), containers=1, processes=1, connections=0, cpu=37.5,
                             agent_prefix=probe)
        assert (await owner.agent.signed_post(client, "/api/v1/reports", report)).status_code == 202

        async def found() -> list[dict[str, Any]]:
            return await _query(owner, client, f'trioscope_node_cpu_usage{{agent_id="{probe}-0"}}', time.time())

        (row,) = await eventually(found)
        assert row["metric"]["tenant"] == owner.name
        assert row["metric"]["deployment_hash"] == owner.agent.deployment_hash
        assert float(row["value"][1]) == 37.5
        assert await _query(other, client, '{__name__=~"trioscope_node_.+"}', time.time()) == []


async def test_a_probe_whose_clock_runs_behind_is_charted_and_seen_now(embedded: ServerProcess) -> None:
    """A probe on a host whose clock runs six minutes behind the server's (a VM
    without NTP) dates every report six minutes back. Its points were recorded
    there, where an instant query at now (five minutes of lookback) found
    nothing of the host, and its host node showed "seen 6 minutes ago"."""
    async with httpx.AsyncClient() as client:
        owner = await new_tenant(client, embedded)
        probe = f"probe-{owner.name}"
        sent = time.time()
        # Two reports as the probe sends them, each dated by its clock when sent:
        # the first might be one it buffered (believed), the second, sent live
        # after it, tells its clock.
        for cpu in (11.0, 42.0):
            report = host_report(0, timestamp=time.time() - 360, containers=1, processes=1, connections=0, cpu=cpu,
                                 agent_prefix=probe)
            assert (await owner.agent.signed_post(client, "/api/v1/reports", report)).status_code == 202

        async def latest() -> list[dict[str, Any]]:
            rows = await _query(owner, client, f'trioscope_node_cpu_usage{{agent_id="{probe}-0"}}', time.time())
            return rows if [float(row["value"][1]) for row in rows] == [42.0] else []

        await eventually(latest)

        node = quote(host_id("host-0", node_scope(owner.name)), safe="")

        async def details() -> dict[str, Any] | None:
            response = await owner.read(client, f"/api/v1/query/nodes/{node}")
            return response.json() if response.status_code == 200 else None  # type: ignore[no-any-return]

        shown = (await eventually(details))["node"]
        assert shown["metrics"]["cpu_usage"] == 42.0
        # When it was received (to the second), not its own time six minutes back.
        assert datetime.fromisoformat(shown["last_seen"].replace("Z", "+00:00")).timestamp() >= math.floor(sent)


async def test_an_unreachable_metrics_engine_is_503_not_500() -> None:
    with ServerProcess(["--metrics-url", f"http://127.0.0.1:{free_port()}"]) as server:
        async with httpx.AsyncClient() as client:
            tenant = await new_tenant(client, server)
            written = await tenant.write(client, b"cpu value=1")
            assert written.status_code == 503
            assert written.json()["error"]["code"] == "metrics_engine_unavailable"
            assert "Retry-After" in written.headers
            read = await tenant.read(client, "/prometheus/api/v1/query", query="up")
            assert read.status_code == 503
            assert read.json()["status"] == "error" and read.json()["errorType"] == "unavailable"
