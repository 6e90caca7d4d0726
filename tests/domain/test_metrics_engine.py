"""The embedded store and PromQL engine with plain values: selection and
matchers, lookback, rate as Prometheus extrapolates it, aggregations,
histogram_quantile, operators, what is refused, cost and series limits."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import pytest

from trioscope.domain.metrics import (
    MAX_NESTING, MAX_OPERATORS, BadQuery, MetricStore, QueryTooExpensive, Sample, StoreLimits, UnsupportedQuery,
    WriteLimitExceeded, format_value, instant_query, label_names, label_values, parse, parse_selector, range_query,
    series_matching,
)
from trioscope.domain.metrics._functions import bucket_quantile

T0 = 1_700_000_100.0
LIMITS = StoreLimits(max_series_per_deployment=100, max_series_per_tenant=200, retention=3600)


def sample(name: str, value: float, at: float, **labels: str) -> Sample:
    pairs = {"__name__": name, "tenant": "acme", "deployment_hash": "d1", **labels}
    return Sample(tuple(sorted(pairs.items())), value, at)


def filled() -> MetricStore:
    store = MetricStore(LIMITS)
    samples = []
    for i in range(21):  # 5 minutes at 15 s
        at = T0 - 300 + 15 * i
        samples += [sample("reqs", 2.0 * i, at, code="200", path="/a"),
                    sample("reqs", 1.0 * i, at, code="500", path="/a"),
                    sample("reqs", 3.0 * i, at, code="200", path="/b"),
                    sample("temp", 20.0 + i, at, room="kitchen")]
        for le, share in (("0.1", 0.5), ("1", 0.9), ("+Inf", 1.0)):
            samples.append(sample("lat_bucket", share * 10 * i, at, le=le))
    store.write("acme", "d1", samples, T0)
    return store


def query(store: MetricStore, expr: str, at: float = T0, tenant: str = "acme") -> Any:
    return instant_query(store.tenant(tenant), expr, at, max_samples=1_000_000)


def values(store: MetricStore, expr: str, at: float = T0) -> dict[tuple[tuple[str, str], ...], float]:
    data = query(store, expr, at)
    assert data["resultType"] == "vector"
    return {tuple(sorted((k, v) for k, v in r["metric"].items() if k not in ("tenant", "deployment_hash"))):
            float(r["value"][1]) for r in data["result"]}


def test_matchers_equal_not_equal_regex_and_negated_regex() -> None:
    store = filled()
    assert len(values(store, 'reqs{code="200"}')) == 2
    assert len(values(store, 'reqs{code!="200"}')) == 1
    assert len(values(store, 'reqs{path=~"/(a|c)"}')) == 2
    assert len(values(store, 'reqs{path=~"/"}')) == 0  # anchored, as in Prometheus
    assert len(values(store, 'reqs{path!~"/a"}')) == 1
    assert len(values(store, '{__name__=~"re.*|temp"}')) == 4
    assert len(values(store, 'reqs{missing=""}')) == 3  # an absent label is ""
    assert len(values(store, '{__name__="temp" or code="500"}')) == 2


def test_instant_selector_takes_the_newest_sample_within_five_minutes() -> None:
    store = filled()
    assert values(store, "temp") == {(("__name__", "temp"), ("room", "kitchen")): 40.0}
    assert values(store, "temp", T0 - 7.5) == {(("__name__", "temp"), ("room", "kitchen")): 39.0}
    assert values(store, "temp", T0 + 299) != {}
    assert values(store, "temp", T0 + 300) == {}
    assert values(store, "temp offset 1m") == {(("__name__", "temp"), ("room", "kitchen")): 36.0}


def test_rate_extrapolates_like_prometheus() -> None:
    store = filled()
    # 2/15 per second exactly: samples cover the whole window, so no extrapolation error.
    assert values(store, 'rate(reqs{code="200",path="/a"}[5m])') == {
        (("code", "200"), ("path", "/a")): pytest.approx(2 / 15)}
    assert values(store, 'increase(reqs{code="500"}[1m])') == {
        (("code", "500"), ("path", "/a")): pytest.approx(4.0)}
    assert values(store, 'irate(reqs{code="500"}[1m])') == {(("code", "500"), ("path", "/a")): pytest.approx(1 / 15)}


def test_a_young_counter_extrapolates_as_prometheus_3_does() -> None:
    """Three samples 10, 20, 30 at 15 s in a 5 m window: the start is too far, so
    it is half an interval (7.5 s) before the first sample; the zero point (15 s
    before it) does not come nearer. Prometheus 2 took the zero point first and
    added 15 s: 30 instead of 25."""
    store = MetricStore(LIMITS)
    store.write("acme", "d1", [sample("c", 10.0 * (i + 1), T0 - 30 + 15 * i) for i in range(3)], T0)
    assert list(values(store, "increase(c[5m])").values()) == [pytest.approx(20 * 37.5 / 30)]
    assert list(values(store, "rate(c[5m])").values()) == [pytest.approx(20 * 37.5 / 30 / 300)]
    # A counter starting near zero: its zero point (0.75 s before the first sample) is nearer.
    store.write("acme", "d1", [sample("z", 1.0 + 20 * i, T0 - 30 + 15 * i) for i in range(3)], T0)
    assert list(values(store, "increase(z[5m])").values()) == [pytest.approx(40 * 30.75 / 30)]


def test_a_counter_reset_is_not_a_negative_rate() -> None:
    store = MetricStore(LIMITS)
    store.write("acme", "d1", [sample("c", v, T0 - 60 + 15 * i) for i, v in enumerate([10, 20, 5, 15, 25])], T0)
    (rate,) = values(store, "increase(c[1m])").values()
    assert rate > 0


def test_aggregations_by_and_without() -> None:
    store = filled()
    assert values(store, "sum(reqs)") == {(): 120.0}
    assert values(store, "sum by (code) (reqs)") == {(("code", "200"),): 100.0, (("code", "500"),): 20.0}
    assert values(store, "max without (path) (reqs)") == {(("code", "200"),): 60.0, (("code", "500"),): 20.0}
    assert values(store, "avg by (path) (reqs)") == {(("path", "/a"),): 30.0, (("path", "/b"),): 60.0}
    assert values(store, "min(reqs)") == {(): 20.0}
    assert values(store, "count by (code) (reqs)") == {(("code", "200"),): 2.0, (("code", "500"),): 1.0}


def test_histogram_quantile() -> None:
    store = filled()
    (median,) = values(store, "histogram_quantile(0.5, sum by (le) (rate(lat_bucket[5m])))").values()
    assert median == pytest.approx(0.1)
    (p90,) = values(store, "histogram_quantile(0.9, rate(lat_bucket[5m]))").values()
    assert p90 == pytest.approx(1.0)
    assert bucket_quantile(0.75, [(0.1, 50), (1.0, 100), (math.inf, 100)]) == pytest.approx(0.55)
    assert bucket_quantile(0.99, [(0.1, 50), (1.0, 90), (math.inf, 100)]) == 1.0  # in +Inf: the highest bound
    assert math.isnan(bucket_quantile(0.5, [(0.1, 5)]))
    assert bucket_quantile(-1, [(0.1, 5), (math.inf, 5)]) == -math.inf


def test_operators() -> None:
    store = filled()
    assert query(store, "1 + 2 * 3")["result"][1] == "7"
    assert values(store, "temp * 2 - 1") == {(("room", "kitchen"),): 79.0}
    assert values(store, "reqs > 50") == {(("__name__", "reqs"), ("code", "200"), ("path", "/b")): 60.0}
    assert len(values(store, "reqs > bool 50")) == 3
    assert values(store, 'reqs{code="200"} / on (path) reqs{code="500"}') == {(("path", "/a"),): 2.0}
    assert len(values(store, 'reqs{path="/a"} and reqs{code="500"}')) == 1
    assert len(values(store, 'reqs{path="/a"} unless reqs{code="500"}')) == 1
    assert len(values(store, 'reqs{path="/a"} or temp')) == 3
    assert values(store, "-temp") == {(("room", "kitchen"),): -40.0}


@pytest.mark.parametrize(("expr", "named"), [
    ("topk(2, reqs)", "topk"),
    ("absent(reqs)", "absent()"),
    ("rate(reqs[5m:1m])", "subqueries"),
    ("reqs @ 1700000000", "@ modifier"),
    ('reqs * on (path) group_left temp', "group_left"),
    ('"text"', "string"),
])
def test_unsupported_constructs_are_named(expr: str, named: str) -> None:
    with pytest.raises(UnsupportedQuery, match=named.replace("(", r"\(").replace(")", r"\)")):
        query(filled(), expr)


def test_bad_promql_and_bad_ranges() -> None:
    store = filled()
    for bad in ("sum(", "reqs{", "rate(reqs)", 'reqs{a=~"("}'):
        with pytest.raises(BadQuery):
            query(store, bad)
    with pytest.raises(BadQuery, match="11000"):
        range_query(store.tenant("acme"), "reqs", T0 - 86400, T0, 1, max_samples=10**9)
    with pytest.raises(BadQuery, match="range vector"):
        range_query(store.tenant("acme"), "reqs[1m]", T0 - 60, T0, 15, max_samples=10**9)


def test_the_largest_query_allowed_evaluates_and_a_larger_one_is_refused_before_parsing() -> None:
    """A query the parser (Rust: it overflows its stack and kills the process
    on a few thousand chained operators) or the evaluator (Python's recursion
    limit) could not take is refused as bad data, naming the bound."""
    store = filled()
    chain = "temp" + " + temp" * MAX_OPERATORS
    deepest = "sum(" * MAX_NESTING + chain + ")" * MAX_NESTING
    assert values(store, deepest) == {(): 40.0 * (MAX_OPERATORS + 1)}
    assert values(store, "-" * MAX_OPERATORS + "temp") == {(("room", "kitchen"),): 40.0}
    for bad, says in ((chain + " + temp", f"{MAX_OPERATORS + 1} operators, at most"),
                      ("temp" + " and temp" * (MAX_OPERATORS + 1), "operators, at most"),
                      ("-" * 5000 + "temp", "5000 operators"),
                      ("(" * (MAX_NESTING + 1) + "temp" + ")" * (MAX_NESTING + 1), "nested 101 deep"),
                      ("temp" + " + temp" * 5000, "operators"),  # the parser crashed the process on this one
                      ("# a comment the parser ends at \r\r" + "temp" + " + temp" * 5000, "operators"),
                      ("temp" + " == temp" * (MAX_OPERATORS + 1), "operators"),
                      ("temp" + " != temp" * (MAX_OPERATORS + 1), "operators")):
        with pytest.raises(BadQuery, match=says):
            query(store, bad)
    with pytest.raises(BadQuery, match='"match\\[\\]": nested'):
        series_matching(store.tenant("acme"), [parse_selector("{" * 200 + "}")], T0 - 60, T0)
    # Matchers nest nothing; strings and comments hold what they like.
    assert values(store, "sum(" + " + ".join(['temp{room=~"k.*",room!~"x",room!="y"}'] * 100) + ")") == {(): 4000.0}
    assert values(store, 'temp{room!="' + "(+" * 500 + '"} # ' + "(" * 500) == {(("__name__", "temp"), ("room", "kitchen")): 40.0}


def test_range_query_steps() -> None:
    data = range_query(filled().tenant("acme"), "temp", T0 - 60, T0, 30, max_samples=10**6)
    (series,) = data["result"]
    assert series["values"] == [[T0 - 60, "36"], [T0 - 30, "38"], [T0, "40"]]
    scalar = range_query(filled().tenant("acme"), "1 + 1", T0 - 15, T0, 15, max_samples=10**6)
    assert scalar["result"] == [{"metric": {}, "values": [[T0 - 15, "2"], [T0, "2"]]}]


def test_a_query_reading_too_many_samples_is_refused() -> None:
    store = filled()
    with pytest.raises(QueryTooExpensive, match="metrics.max_query_samples"):
        range_query(store.tenant("acme"), "sum(rate(reqs[5m]))", T0 - 3600, T0, 15, max_samples=1000)


def test_a_tenant_reads_only_its_own_series() -> None:
    store = filled()
    store.write("other", "d2", [sample("secret", 1.0, T0)], T0)
    assert query(store, '{__name__=~".+"}', tenant="nobody")["result"] == []
    assert all(r["metric"]["tenant"] == "acme" for r in query(store, '{tenant=~".+"}')["result"])
    assert "secret" not in label_values(store.tenant("acme"), "__name__", [])


def test_series_and_label_apis() -> None:
    view = filled().tenant("acme")
    found = series_matching(view, [parse_selector('reqs{code="500"}')], T0 - 60, T0)
    assert [s["path"] for s in found] == ["/a"]
    assert series_matching(view, [parse_selector("reqs")], T0 + 10, T0 + 20) == []
    assert label_names(view, [parse_selector("temp")]) == ["__name__", "deployment_hash", "room", "tenant"]
    assert label_values(view, "code", []) == ["200", "500"]
    with pytest.raises(BadQuery):
        parse_selector("sum(reqs)")


def test_a_regex_whose_program_needs_more_than_a_mebibyte_is_refused_naming_it() -> None:
    """RE2's default memory (8 MiB a pattern, its DFA's states kept with it in
    the cache) let one viewer's queries pin ~550 MB; ``\\pL{100}`` alone is a
    program of ~120,000 instructions."""
    with pytest.raises(BadQuery, match=r"invalid regular expression '\\\\pL\{100\}': .*too large"):
        query(filled(), 'reqs{path=~"\\\\pL{100}"}', T0)
    assert query(filled(), 'reqs{path=~"/[a-z]{1,40}"}', T0)["result"]  # an ordinary one still compiles


def test_the_characters_of_series_labels_have_budgets_per_tenant_and_over_all() -> None:
    """Series counts alone let one tenant's 100,000 series of 26 labels of 1,000
    characters hold ~4 GB (a few MB of gzip on the wire)."""
    big = "x" * 1000
    size = len("__name__a" "tenantacme" "deployment_hashd1" "host") + 1000  # label_size of sample("a", ..., host=big)
    store = MetricStore(StoreLimits(max_series_per_deployment=100, max_series_per_tenant=100, retention=3600,
                                    max_label_bytes_per_tenant=2 * size + 10, max_label_bytes=3 * size + 10))
    store.write("acme", "d1", [sample("a", 1, T0, host=big), sample("a", 1, T0, host=big + "y")], T0)
    store.write("acme", "d1", [sample("a", 2, T0 + 15, host=big)], T0 + 15)  # a known series costs nothing more
    with pytest.raises(WriteLimitExceeded) as caught:
        store.write("acme", "d1", [sample("a", 3, T0 + 30, host=big), sample("a", 1, T0 + 30, host=big + "z")], T0)
    assert (caught.value.status, caught.value.code) == (429, "tenant_label_bytes_reached")
    assert caught.value.config_key == "metrics.max_label_bytes_per_tenant"
    assert query(store, "max(a)", T0 + 30)["result"][0]["value"][1] == "2"  # nothing of it was kept
    store.write("beta", "d1", [sample("a", 1, T0, host=big)], T0)
    with pytest.raises(WriteLimitExceeded) as caught:
        store.write("gamma", "d1", [sample("a", 1, T0, host="small")], T0)
    assert caught.value.code == "server_label_bytes_reached"
    store.expire(T0 + 3601)  # every series gone with its samples: their characters are free again
    store.write("gamma", "d1", [sample("a", 1, T0 + 3601, host=big + "z")], T0 + 3601)


def test_an_answer_over_its_most_json_is_refused_unless_a_limit_cuts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget counts series, not their labels: one viewer's answer of 38,880
    series of 26 KB of labels was 978 MB, serialized on the event loop."""
    from trioscope.domain.metrics import _answers
    monkeypatch.setattr(_answers, "MAX_ANSWER_BYTES", 20_000)
    store = MetricStore(LIMITS)
    store.write("acme", "d1", [sample("big", 1, T0 - 15 * i, host=f"{n}" + "x" * 600)
                               for n in range(40) for i in range(3)], T0)
    view = store.tenant("acme")
    for ask in (lambda: query(store, "big"), lambda: range_query(view, "big", T0 - 30, T0, 15, max_samples=10**9),
                lambda: series_matching(view, [parse_selector("big")], T0 - 60, T0),
                lambda: label_values(view, "host", [])):
        with pytest.raises(QueryTooExpensive, match="of JSON, more than"):
            ask()
    assert len(query(store, 'big{host=~"1.*"}')["result"]) == 11  # a narrower query fits
    assert len(series_matching(view, [parse_selector("big")], T0 - 60, T0, limit=5)) == 6  # one more: it was cut
    assert len(label_values(view, "host", [], limit=5)) == 6


def test_series_limits_refuse_a_write_whole() -> None:
    store = MetricStore(StoreLimits(max_series_per_deployment=2, max_series_per_tenant=3, retention=3600))
    store.write("acme", "d1", [sample("a", 1, T0), sample("b", 1, T0)], T0)
    with pytest.raises(WriteLimitExceeded) as caught:
        store.write("acme", "d1", [sample("a", 2, T0 + 15), sample("c", 1, T0 + 15)], T0)
    assert (caught.value.status, caught.value.config_key) == (429, "metrics.max_series_per_deployment")
    assert query(store, "a", T0 + 15)["result"][0]["value"][1] == "1"  # nothing of it was kept
    other = Sample((("__name__", "c"), ("deployment_hash", "d2"), ("tenant", "acme")), 1, T0)
    store.write("acme", "d2", [other], T0)
    with pytest.raises(WriteLimitExceeded) as caught:
        store.write("acme", "d2", [Sample((("__name__", "d"), ("deployment_hash", "d2"), ("tenant", "acme")), 1,
                                          T0)], T0)
    assert caught.value.config_key == "metrics.max_series_per_tenant"
    server_wide = MetricStore(StoreLimits(max_series_per_deployment=5, max_series_per_tenant=5, max_series=2,
                                          retention=3600))
    server_wide.write("acme", "d1", [sample("a", 1, T0)], T0)
    server_wide.write("beta", "d1", [sample("a", 1, T0)], T0)
    with pytest.raises(WriteLimitExceeded) as caught:
        server_wide.write("gamma", "d1", [sample("a", 1, T0)], T0)
    assert (caught.value.status, caught.value.config_key) == (429, "metrics.max_series")
    server_wide.expire(T0 + 3601)
    server_wide.write("gamma", "d1", [sample("a", 1, T0 + 3601)], T0 + 3601)  # room again once expired


def test_one_sample_per_bucket_and_retention() -> None:
    store = MetricStore(LIMITS)
    bucket = T0 - T0 % 15  # the start of T0's 15 s bucket
    store.write("acme", "d1", [sample("a", 1, bucket - 1), sample("a", 2, bucket + 1)], T0)
    store.write("acme", "d1", [sample("a", 3, bucket + 2), sample("a", 0, T0 - 3600 - 1)], T0)
    assert store.stats().samples == 2  # the bucket's later write replaced; too old: dropped
    store.write("acme", "d1", [sample("a", 4, bucket - 30)], T0)  # out of order: put in its place
    assert store.stats().samples == 3
    assert store.expire(T0 + 3600 + 15) == 1
    assert store.stats().series == 0 and store.stats().tenants == 0


def test_values_are_written_as_prometheus_writes_them() -> None:
    assert [format_value(v) for v in (1.0, 0.5, -2.0, 1e21, 1e-7, math.nan, math.inf, -math.inf, 123456.789)] == [
        "1", "0.5", "-2", "1000000000000000000000", "0.0000001", "NaN", "+Inf", "-Inf", "123456.789"]


@pytest.mark.parametrize("query", [
    "x[1e30]", "x[ 2e19 ]", "x offset 1e400", "x offset -1e30", "x offset inf", "x offset - Inf", "x offset NaN",
    "x[5m:1e30]", "x[1e30:1m]", "rate(x[1e30])", "x[0x7fffffffffffffff]", "x offset 0x" + "f" * 300,
    "x[9999999999999999999999]", "sum(x) offset 1e30",
    "count_over_time(x[100000000y])", "x offset 100000000y", "x offset -300y", "x[1y:100000000y]", "x[300y]",
])
def test_a_duration_past_the_parsers_range_is_refused_before_it(query: str) -> None:
    """The parser (Rust) panics on these after its hook writes to stderr (or
    raises ``OverflowError``): each request of any reader wrote past the log.
    With units, it parses them, and reading one failed (``ValueError``) in the
    engine: a 422 and a traceback in the log for each request."""
    with pytest.raises(BadQuery, match="is out of range: at most 9223372037 seconds"):
        parse(query)


@pytest.mark.parametrize("query", [
    "x[5m]", "x[300]", "x offset 1e9", "x offset 5m", "x[5m:30s]", "x @ 1e30", 'x{a="offset 1e30"}',
    "x{a='[1e30]'}", "x # offset 1e30\n", "job:1e30", "rate(offsetInfo[5m])", "jvm:offsetNanos", "offset1e99",
    "job:offset9999999999", "x[1h30m]", "x offset -1w", "x[290y]", "rate(x[5m] offset 1y)",
])
def test_a_query_without_such_a_duration_is_left_to_the_parser(query: str) -> None:
    """Strings, comments and names that hold "offset" or a bracket are not durations."""
    parse(query)


@pytest.mark.parametrize("tail", ["y", "", ")", "- -"])
def test_a_long_run_of_spaces_after_offset_is_read_in_linear_time(tail: str) -> None:
    """Greedy runs of spaces around ``offset``'s optional sign made the duration
    check backtrack in cubic time with the GIL held: one viewer's query of
    1,500 spaces stalled every request for 25 s (60,000, the query's limit,
    for weeks). Run in a process of its own, whose deadline ends it: the
    regular expression holds the GIL, so a hang here would stall the suite."""
    query = "up offset" + " " * 60_000 + tail
    program = ("import sys; from trioscope.domain.metrics import BadQuery, parse\n"
               "try:\n    parse(sys.stdin.read())\nexcept BadQuery as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", program], input=query, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "invalid parameter" in done.stdout  # refused by the parser, as any malformed query is
