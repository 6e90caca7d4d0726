"""The Prometheus HTTP API's parameters as the metrics API reads them (times,
step, limit), its embedded reads of labels, and the proxied engine's errors in
Prometheus' shape: plain values, and the metrics actor in an actor system."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import orjson
import pytest

from trioscope.actors.metrics import InstantQuery, MetricsActor, WriteSamples
from trioscope.config import Settings
from trioscope.domain import metrics
from trioscope.http._metrics_backends import (
    EARLIEST_TIME,
    LATEST_TIME,
    EmbeddedMetrics,
    PrometheusError,
    check_params,
    parse_limit,
    parse_step,
    parse_time,
)
from trioscope.http._metrics_proxy import _prometheus_error  # the engine's errors, as the proxy answers them
from trioscope.runtime import ActorSpec, SupervisorSpec, open_actor_system

AT = datetime(2026, 12, 5, 3, 0, tzinfo=UTC).timestamp()


def _refused(call: object, *args: object) -> dict[str, object]:
    with pytest.raises(PrometheusError) as raised:
        call(*args)  # type: ignore[operator]
    assert raised.value.answer.status == 400
    body: dict[str, object] = orjson.loads(raised.value.answer.body)
    assert body["errorType"] == "bad_data"
    return body


@pytest.mark.parametrize(("raw", "expected"), [
    ("1796439893", 1796439893.0), ("1796439893.25", 1796439893.25), ("-5", -5.0), ("1.7e9", 1.7e9), (".5", 0.5),
    ("2026-12-05T03:00:00Z", AT), ("2026-12-05T03:00:00.5Z", AT + 0.5), ("2026-12-05T04:30:00+01:30", AT),
    ("2026-12-04T22:00:00-05:00", AT), ("0001-01-01T00:00:00Z", EARLIEST_TIME),
    ("9999-12-31T23:59:59.999Z", LATEST_TIME),
    ("-292273086-05-16T16:47:06Z", EARLIEST_TIME),  # Prometheus' own earliest and latest, as its clients send them
    ("292277026596-12-04T15:30:07.999999999Z", LATEST_TIME),
])
def test_times_prometheus_accepts(raw: str, expected: float) -> None:
    assert parse_time([("time", raw)], "time", None) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("raw", [
    "2026-12-05T03:00:00",  # no zone: it used to be read in the server's own time zone
    "2026-12-05", "20261205T030000Z", "2026-12-05 03:00:00Z", " 1796439893 ", "1_796_439_893", "nan", "inf",
    "2026-02-30T00:00:00Z", "2026-12-05T24:00:00Z", "abc", "1" * 70,
])
def test_times_prometheus_refuses_are_400_naming_the_parameter(raw: str) -> None:
    body = _refused(parse_time, [("start", raw)], "start", None)
    assert str(body["error"]).startswith('invalid parameter "start": cannot parse')


@pytest.mark.parametrize("raw", ["1e300", "-1e300", "1e12", "253402300800", "-62135596801", "1e400"])
def test_times_out_of_range_are_400_naming_the_parameter_and_the_range(raw: str) -> None:
    body = _refused(parse_time, [("end", raw)], "end", None)
    assert 'invalid parameter "end"' in str(body["error"])
    assert "out of range" in str(body["error"]) and "9999-12-31T23:59:59.999Z" in str(body["error"])


def test_a_missing_time_is_the_default_or_400() -> None:
    assert parse_time([], "time", 7.0) == 7.0
    assert 'invalid parameter "start": missing' in str(_refused(parse_time, [], "start", None)["error"])


@pytest.mark.parametrize(("raw", "expected"), [("15", 15.0), ("15s", 15.0), ("1m", 60.0), ("0.5", 0.5),
                                               ("1e9", 1e9), ("292y", 292 * 365 * 86400.0)])
def test_steps_accepted(raw: str, expected: float) -> None:
    assert parse_step([("step", raw)]) == expected


@pytest.mark.parametrize("raw", ["1e300", "1e11", "-1e11", "300y", "nan", " 15 ", "abc"])
def test_steps_out_of_range_or_unreadable_are_400(raw: str) -> None:
    assert str(_refused(parse_step, [("step", raw)])["error"]).startswith('invalid parameter "step"')


def test_limit() -> None:
    assert parse_limit([]) is None
    assert parse_limit([("limit", "0")]) is None
    assert parse_limit([("limit", "2")]) == 2
    for raw in ("abc", "-1", "1.5", "1" * 30):
        assert str(_refused(parse_limit, [("limit", raw)])["error"]).startswith('invalid parameter "limit"')


def test_proxied_reads_refuse_what_prometheus_refuses_before_asking_the_engine() -> None:
    check_params("query", [("query", "1"), ("time", "1796439893")])
    check_params("labels", [("start", "2026-12-05T03:00:00Z"), ("limit", "5")])
    _refused(check_params, "query", [("query", "1"), ("time", "1e300")])
    _refused(check_params, "labels", [("start", "abc")])
    _refused(check_params, "label_values", [("limit", "x")])
    _refused(check_params, "query_range", [("start", "10"), ("end", "5"), ("step", "1")])
    _refused(check_params, "query_range", [("start", "1"), ("end", "5"), ("step", "0")])
    _refused(check_params, "query_range", [("start", "1"), ("end", "5"), ("step", "1e300")])


def test_an_engines_parse_error_is_400_bad_data_and_its_other_422s_execution() -> None:
    unparsed = orjson.dumps({"status": "error", "errorType": "422", "error": 'error when executing query="px{" for '
                             '(time=1, step=300000): labelFilterExpr: unexpected token ""; want "ident"; unparsed '
                             'data: ""'})
    answer = _prometheus_error(422, unparsed)
    assert answer.status == 400 and orjson.loads(answer.body)["errorType"] == "bad_data"
    duplicate = orjson.dumps({"status": "error", "errorType": "422", "error": "duplicate output timeseries: {}"})
    answer = _prometheus_error(422, duplicate)
    assert answer.status == 422 and orjson.loads(answer.body)["errorType"] == "execution"
    assert orjson.loads(_prometheus_error(503, orjson.dumps({"status": "error", "errorType": "503",
                                                             "error": "busy"})).body)["errorType"] == "unavailable"
    own = orjson.dumps({"status": "error", "errorType": "timeout", "error": "slow"})
    assert _prometheus_error(503, own).body == own


# ---- embedded reads ------------------------------------------------------------------------------

def _sample(name: str, at: float, **labels: str) -> metrics.Sample:
    pairs = {"__name__": name, "tenant": "acme", "deployment_hash": "d1", **labels}
    return metrics.Sample(tuple(sorted(pairs.items())), 1.0, at)


async def _embedded_reads(check: object) -> None:
    settings = Settings.defaults()
    tree = SupervisorSpec(name="root", children=[ActorSpec(name="metrics", factory=lambda: MetricsActor(settings))])
    now = time.time()
    async with open_actor_system(tree) as system:
        actor = system.lookup("/root/metrics")
        await actor.ask(WriteSamples("acme", "d1", [
            _sample("old", now - 3000, job="a", zone="z1"), _sample("new", now - 10, job="b", color="red"),
            _sample("new", now - 10, job="c")]))
        await check(EmbeddedMetrics(actor, settings), now)  # type: ignore[operator]


async def test_labels_and_label_values_honour_start_end_and_limit() -> None:
    async def check(backend: EmbeddedMetrics, now: float) -> None:
        async def data(api: str, params: list[tuple[str, str]], label: str = "") -> dict[str, object]:
            answer = await backend.read("acme", api, params, label)
            assert answer.status == 200, answer.body
            body: dict[str, object] = orjson.loads(answer.body)
            return body

        everything = await data("label_values", [], "job")
        assert everything["data"] == ["a", "b", "c"] and "warnings" not in everything
        recent = [("start", str(now - 60)), ("end", str(now))]
        assert (await data("label_values", recent, "job"))["data"] == ["b", "c"]
        assert (await data("labels", recent))["data"] == ["__name__", "color", "deployment_hash", "job", "tenant"]
        assert "zone" in (await data("labels", []))["data"]  # type: ignore[operator]
        assert (await data("label_values", [("end", str(now - 60))], "job"))["data"] == ["a"]
        assert (await data("label_values", [*recent, ("match[]", '{color="red"}')], "job"))["data"] == ["b"]
        limited = await data("label_values", [("limit", "2")], "job")
        assert limited["data"] == ["a", "b"] and limited["warnings"] == ["results truncated due to limit"]
        assert (await data("labels", [("limit", "1")]))["data"] == ["__name__"]
        assert (await data("series", [("match[]", "new"), ("limit", "1")]))["warnings"] == [
            "results truncated due to limit"]
        for params in ([("start", "abc")], [("end", "2026-12-05")], [("limit", "-1")], [("start", "1e300")]):
            with pytest.raises(PrometheusError) as raised:
                await backend.read("acme", "labels", params)
            assert raised.value.answer.status == 400
            assert f'invalid parameter "{params[0][0]}"' in orjson.loads(raised.value.answer.body)["error"]

    await _embedded_reads(check)


async def test_a_read_the_engine_fails_on_is_422_execution_and_the_actor_carries_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def check(backend: EmbeddedMetrics, now: float) -> None:
        def broken(*args: object, **kwargs: object) -> object:
            raise ZeroDivisionError("float division by zero")

        real = metrics.instant_query
        monkeypatch.setattr(metrics, "instant_query", broken)
        for _ in range(10):  # more than the root supervisor's restart intensity, had each crashed the actor
            with pytest.raises(PrometheusError) as raised:
                await backend.read("acme", "query", [("query", "new"), ("time", str(now))])
            assert raised.value.answer.status == 422
            body = orjson.loads(raised.value.answer.body)
            assert body["errorType"] == "execution" and "ZeroDivisionError" in body["error"]
            assert "Traceback" not in body["error"]
        monkeypatch.setattr(metrics, "instant_query", real)
        answer = await backend.read("acme", "query", [("query", "count(new)"), ("time", str(now))])
        assert orjson.loads(answer.body)["data"]["result"][0]["value"][1] == "2"

    await _embedded_reads(check)


def test_an_instant_query_message_still_takes_its_time() -> None:
    assert InstantQuery("acme", "1", 5.0).at == 5.0 and not math.isnan(EARLIEST_TIME)


@pytest.mark.parametrize(("raised", "status", "error_type"), [
    (metrics.QueryTimedOut("query timed out in expression evaluation (metrics.query_timeout)"), 503, "timeout"),
    (metrics.QueryExecutionError("vector cannot contain metrics with the same labelset"), 422, "execution"),
], ids=["timeout", "execution"])
async def test_the_engines_timeout_and_execution_errors_answer_as_prometheus(
        monkeypatch: pytest.MonkeyPatch, raised: Exception, status: int, error_type: str) -> None:
    async def check(backend: EmbeddedMetrics, now: float) -> None:
        def refusing(*args: object, **kwargs: object) -> object:
            raise raised

        monkeypatch.setattr(metrics, "instant_query", refusing)
        with pytest.raises(PrometheusError) as answered:
            await backend.read("acme", "query", [("query", "new"), ("time", str(now))])
        assert answered.value.answer.status == status
        body = orjson.loads(answered.value.answer.body)
        assert (body["errorType"], body["error"]) == (error_type, str(raised))

    await _embedded_reads(check)
