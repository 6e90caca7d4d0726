"""A PromQL read's form is bounded while it is read and parsed: a 9.4 MiB form
of a million parameters was parsed whole on the event loop (~1.5 s of CPU a
request, any user token) before the count of parameters was checked (a
reviewer, measured on a real server)."""

from __future__ import annotations

import time
import urllib.parse

import orjson
import pytest
import trio

from trioscope.domain.principals import Role, mint_user_token
from trioscope.http import _metrics_api
from trioscope.http._metrics_backends import EmbeddedMetrics, success
from trioscope.store import token_secret

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
MiB = 1024 * 1024


@pytest.fixture
def viewer(settings) -> dict[str, str]:
    """A VIEWER's credentials: the least a read asks for."""
    secret = token_secret(settings.auth.secret, settings.storage.data_dir)
    minted = mint_user_token(secret, user_id="mallory", tenant="acme", role=Role.VIEWER, now=time.time(), ttl=600)
    return {"Authorization": f"Bearer {minted}"}


@pytest.fixture
def reads(monkeypatch) -> list[list[tuple[str, str]]]:
    """The parameters every read reached the backend with."""
    seen: list[list[tuple[str, str]]] = []

    async def read(self, tenant, api, params, label=""):  # EmbeddedMetrics.read's
        seen.append(list(params))
        return success({"resultType": "vector", "result": []})

    monkeypatch.setattr(EmbeddedMetrics, "read", read)
    return seen


async def test_a_form_of_100000_parameters_is_refused_without_splitting_them(
        client, viewer, reads, monkeypatch) -> None:
    unquoted = 0
    real = urllib.parse.unquote

    def counting(*args, **kwargs):  # urllib.parse.unquote's
        nonlocal unquoted
        unquoted += 1
        return real(*args, **kwargs)

    # parse_qsl unquotes each name and value it splits off: a form parsed whole costs 200,000 calls.
    monkeypatch.setattr(urllib.parse, "unquote", counting)
    form = b"&".join(b"p%d=1" % k for k in range(100_000))
    assert len(form) < MiB  # under the form's size limit: the count refuses it
    response = await client.post("/prometheus/api/v1/query", data=form, headers={**FORM, **viewer})
    assert response.status_code == 400
    body = await response.get_json()
    assert body["errorType"] == "bad_data" and f"at most {_metrics_api.MAX_PARAMS} parameters" in body["error"]
    assert unquoted <= 2 * _metrics_api.MAX_PARAMS
    assert reads == []


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
async def test_a_form_over_the_limit_is_413_before_it_has_all_arrived(client, viewer, declared) -> None:
    chunk = b"&".join([b"query=" + b"1" * 60_000] * 2) + b"&"
    total = 4 * MiB
    headers = {**FORM, **viewer, **({"Content-Length": str(total)} if declared else {})}
    sent = 0
    async with client.request("/api/v1/metrics/query", method="POST", headers=headers) as connection, \
            trio.open_nursery() as nursery:
        async def send() -> None:
            nonlocal sent
            while sent < total:
                await connection.send(chunk)
                sent += len(chunk)
            await trio.sleep_forever()  # never complete: a server that waits for the rest never answers

        nursery.start_soon(send)
        with trio.fail_after(20):
            answer = await connection.as_response()
        nursery.cancel_scope.cancel()
    assert sent < total  # refused while the body was still arriving
    assert answer.status_code == 413
    error = orjson.loads(await answer.get_data())["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"]["limit_bytes"] == _metrics_api.MAX_FORM_BYTES
    assert str(_metrics_api.MAX_FORM_BYTES) in error["message"]


async def test_a_form_within_the_limits_is_read_before_the_urls_parameters(client, viewer, reads) -> None:
    query = "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m]))"
    form = urllib.parse.urlencode({"query": query, "time": "1796439893", "empty": ""}).encode()
    response = await client.post("/api/v1/metrics/query?timeout=5s", data=form, headers={**FORM, **viewer})
    assert response.status_code == 200
    assert reads == [[("query", query), ("time", "1796439893"), ("empty", ""), ("timeout", "5s")]]


async def test_the_parameter_bound_counts_the_url_and_the_form_together(client, viewer, reads) -> None:
    in_url = "&".join(f"u{k}=1" for k in range(200))
    fits = "&".join(f"f{k}=1" for k in range(_metrics_api.MAX_PARAMS - 200)).encode()
    response = await client.post(f"/api/v1/metrics/query?{in_url}", data=fits, headers={**FORM, **viewer})
    assert response.status_code == 200 and len(reads[0]) == _metrics_api.MAX_PARAMS
    response = await client.post(f"/api/v1/metrics/query?{in_url}", data=fits + b"&one=more",
                                 headers={**FORM, **viewer})
    assert response.status_code == 400 and "at most 256 parameters" in (await response.get_json())["error"]
    value = b"query=" + b"x" * (_metrics_api.MAX_PARAM_BYTES + 1)
    response = await client.post("/api/v1/metrics/query", data=value, headers={**FORM, **viewer})
    assert response.status_code == 400 and len(reads) == 1


async def test_a_form_that_is_not_utf8_or_multipart_is_a_clear_4xx(client, viewer, reads) -> None:
    response = await client.post("/api/v1/metrics/query", data=b"query=\xff\xfe", headers={**FORM, **viewer})
    assert response.status_code == 400
    assert (await response.get_json())["error"]["code"] == "invalid_form"
    multipart = {"Content-Type": "multipart/form-data; boundary=x", **viewer}
    response = await client.post("/api/v1/metrics/query", data=b"--x\r\n", headers=multipart)
    assert response.status_code == 415
    assert "application/x-www-form-urlencoded" in (await response.get_json())["error"]["message"]
    assert reads == []


async def test_a_body_that_is_not_a_form_is_not_read_as_one(client, viewer, reads) -> None:
    response = await client.post("/api/v1/metrics/query?query=up", data=b'{"query": "down"}',
                                 headers={"Content-Type": "application/json", **viewer})
    assert response.status_code == 200 and reads == [[("query", "up")]]


async def test_a_forms_value_counts_before_the_urls_as_prometheus_form_value(client, viewer, reads) -> None:
    response = await client.post("/prometheus/api/v1/query?query=from_url&time=1", data=b"query=from_form",
                                 headers={**FORM, **viewer})
    assert response.status_code == 200
    (params,) = reads
    first = {}
    for key, value in params:
        first.setdefault(key, value)
    assert first == {"query": "from_form", "time": "1"}
