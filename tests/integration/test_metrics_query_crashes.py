"""Queries that used to crash the metrics actor (a Python exception in the
embedded engine, or a panic of the PromQL parser), a few in a row exceeding
the root supervisor's restart intensity so that the whole server exited.
Each is repeated past that intensity against a real server: every answer is
Prometheus', and the server still answers afterwards."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.metrics_clients import BACKENDS, metrics_server, new_tenant
from tests.server_process import ServerProcess
from tests.waiting import eventually

REPEATS = 8
"""More than the root supervisor's restart intensity (5 within 30 s)."""


@pytest.fixture(scope="module")
def embedded() -> Iterator[ServerProcess]:
    with ServerProcess() as process:
        yield process


async def test_a_viewer_of_an_empty_tenant_cannot_stop_the_server(embedded: ServerProcess) -> None:
    headers = {"Authorization": f"Bearer {embedded.user_token('vera', 'empty-tenant', 'VIEWER')}"}
    async with httpx.AsyncClient(timeout=30) as client:
        for query, status, value in (("(-8) ^ (1/3)", 200, "NaN"), ("x[1e30]", 400, None),
                                     ("x offset 1e400", 400, None)):
            for _ in range(REPEATS):
                response = await client.get(f"{embedded.base_url}/prometheus/api/v1/query",
                                            params={"query": query, "time": "1796439893"}, headers=headers)
                assert response.status_code == status, (query, response.text)
                if value is not None:
                    assert response.json()["data"]["result"][1] == value
                else:
                    assert response.json()["errorType"] == "bad_data"
        assert (await client.get(f"{embedded.base_url}/health")).status_code == 200
    assert embedded.proc.poll() is None
    # Refused before the parser (Rust) panics: its hook wrote past the log, ~120 lines with RUST_BACKTRACE.
    assert "panicked" not in embedded.stderr()


async def test_ieee_edge_cases_answer_prometheus_values_and_the_server_stays(embedded: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        tenant = await new_tenant(client, embedded)
        at = int(time.time()) - 30
        points = [{"metric": "room_temp", "labels": {"room": room}, "value": value, "timestamp": at}
                  for room, value in (("a", 20.5), ("b", 21.0))]
        points += [{"metric": "huge_gauge", "labels": {"k": k}, "value": 1e308, "timestamp": at} for k in "12"]
        points += [{"metric": "h_bucket", "labels": {"le": le}, "value": v, "timestamp": at}
                   for le, v in (("0.1", 0), ("1", 5), ("+Inf", 10))]
        written = await tenant.write(client, orjson.dumps({"points": points}), "application/json")
        assert written.status_code == 204, written.text

        async def values(query: str) -> list[str]:
            response = await tenant.read(client, "/prometheus/api/v1/query", query=query, time=str(at))
            assert response.status_code == 200, (query, response.text)
            result: list[dict[str, Any]] = response.json()["data"]["result"]
            return [row["value"][1] for row in result]

        async def seen() -> list[str]:
            return await values("count(h_bucket)")

        await eventually(seen)
        cases = {
            'sum(room_temp{room="a"} / 0 or -room_temp{room="b"} / 0)': ["NaN"],
            'avg(room_temp{room="a"} / 0 or -room_temp{room="b"} / 0)': ["NaN"],
            "sum(huge_gauge)": ["+Inf"],
            '(room_temp{room="a"} / 0) % 2': ["NaN"],
            "histogram_quantile(0, h_bucket)": ["NaN"],
            'max((room_temp{room="a"} * 0 / 0) or room_temp{room="b"})': ["21"],
            'min((room_temp{room="a"} * 0 / 0) or room_temp{room="b"})': ["21"],
        }
        for query, expected in cases.items():
            for _ in range(REPEATS):
                assert await values(query) == expected, query
        assert await values("count(room_temp)") == ["2"]
        assert (await client.get(f"{embedded.base_url}/health")).status_code == 200
    assert embedded.proc.poll() is None and "Traceback" not in embedded.stderr()


@pytest.fixture(scope="module", params=BACKENDS)
def either(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with metrics_server(request.param) as process:
        yield process


async def test_both_backends_answer_bad_queries_and_times_as_prometheus(either: ServerProcess) -> None:
    """A syntax error is 400 bad_data from either backend (VictoriaMetrics answers
    422 with errorType "422"); so are times and steps Prometheus refuses."""
    headers = {"Authorization": f"Bearer {either.user_token('vic', 'some-tenant', 'VIEWER')}"}
    base = f"{either.base_url}/prometheus/api/v1"
    refused = [
        ("query", {"query": "px{"}, "query"),
        ("query", {"query": "sum("}, "query"),
        ("query", {"query": "1", "time": "1e300"}, 'invalid parameter "time"'),
        ("query", {"query": "1", "time": "-1e300"}, 'invalid parameter "time"'),
        ("query", {"query": "1", "time": "2026-12-05T03:00:00"}, 'invalid parameter "time"'),
        ("query", {"query": "1", "time": " 1796439893 "}, 'invalid parameter "time"'),
        ("query_range", {"query": "1", "start": "1e300", "end": "1e300", "step": "15"}, 'invalid parameter "start"'),
        ("query_range", {"query": "1", "start": "1", "end": "100", "step": "1e300"}, 'invalid parameter "step"'),
        ("labels", {"start": "abc"}, 'invalid parameter "start"'),
        ("label/job/values", {"limit": "x"}, 'invalid parameter "limit"'),
    ]
    async with httpx.AsyncClient(timeout=30) as client:
        for api, params, says in refused:
            response = await client.get(f"{base}/{api}", params=params, headers=headers)
            assert response.status_code == 400, (api, params, response.text)
            body = response.json()
            assert body["errorType"] == "bad_data" and body["status"] == "error", body
            if says != "query":
                assert says in body["error"], body
        fine = await client.get(f"{base}/query", params={"query": "1", "time": "2026-12-05T03:00:00Z"},
                                headers=headers)
        assert fine.status_code == 200 and "1796439600" in fine.text  # a scalar (embedded) or a vector (VM)
