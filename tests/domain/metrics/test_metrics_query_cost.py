"""What a regular expression costs the embedded engine's budget: the value's
length times the pattern's program, charged before the match runs, with the
clock read often enough that the deadline stops a scan within a match or two.
A reviewer's tenant wrote 2,000 label values of 1 KB: charged a flat 20 units a
match, one query of 12 such matchers ran 47 s (``--metrics-query-timeout``
30 s) on the event loop. Plain values, a fake clock."""

from __future__ import annotations

import random

import pytest
import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

from trioscope.domain.metrics import (
    MetricStore, QueryTimedOut, QueryTooExpensive, Sample, StoreLimits, instant_query, parse_selector,
)
from trioscope.domain.metrics._engine import LITERALS_COST, Budget, Pattern, RegexAnswers, select

T0 = 1_700_000_100.0
STEEP = ".*a.{20}b.*"
"""A pattern RE2's DFA gives up on over values of a's and b's: its NFA steps
through 182 instructions for every byte (1.7-5 ms for 1 KB, measured)."""


def blobs(count: int, length: int) -> MetricStore:
    rng = random.Random(7)
    store = MetricStore(StoreLimits(max_series_per_deployment=10 * count, max_series_per_tenant=10 * count,
                                    retention=3600))
    samples = [Sample(tuple(sorted({"__name__": "blobs", "blob": "".join(rng.choice("ab") for _ in range(length)),
                                    "tenant": "t", "deployment_hash": "d1"}.items())), 1.0, T0 - 20)
               for _ in range(count)]
    store.write("t", "d1", samples, T0)
    return store


def test_a_match_is_charged_by_the_values_length() -> None:
    query = f'count({{blob=~"{STEEP}"}})'
    # Within the budget for values of 10 bytes; the same number of 1 KB values costs a hundred times as much.
    assert instant_query(blobs(50, 10).tenant("t"), query, T0, max_samples=100_000)["resultType"] == "vector"
    with pytest.raises(QueryTooExpensive):
        instant_query(blobs(50, 1000).tenant("t"), query, T0, max_samples=100_000)


def test_a_match_is_charged_by_the_patterns_program() -> None:
    value = "ab" * 500
    assert Pattern(STEEP).cost(value) > 10 * Pattern("a.*").cost(value)
    assert Pattern(STEEP).cost("é" * 500) == Pattern(STEEP).cost(value)  # UTF-8 bytes, what RE2 steps through


def test_the_deadline_stops_a_scan_of_long_values_before_the_second_match() -> None:
    view = blobs(2000, 1000).tenant("t")
    readings = iter([0.0])

    def clock() -> float:
        return next(readings, 10.0)  # past the deadline from its second reading on

    answers: RegexAnswers = {}
    budget = Budget(10**12, deadline=1.0, clock=clock)
    with pytest.raises(QueryTimedOut):
        select(view, parse_selector(f'{{blob=~"{STEEP}"}}'), budget, answers)
    assert len(answers[STEEP]) <= 1  # charged before it runs: the second match never did


@pytest.mark.parametrize("pattern", [
    "web|api", "(web|api)", "(?:web|api)", r"host1\.example|host2\.example", "a|", "", "()", r"x\|y", r"a\\",
    "web.*", "(?i)web", "[ab]", r"\d", "(a|b)c", "a{2}", "^a$", "((a))", "é|ü",
])
def test_an_alternation_of_literals_matches_as_re2_does(pattern: str) -> None:
    compiled = re2.compile(pattern)
    for value in ("web", "api", "WEB", "webx", "", "a", "aa", "ab", "ac", "host1.example", "host1xexample",
                  "x|y", "x", "a\\", "é", "ü", "b"):
        assert Pattern(pattern).matches(value) == (compiled.fullmatch(value) is not None), value


def test_an_alternation_of_literals_costs_a_lookup_whatever_the_values_length() -> None:
    assert Pattern(r"host1\.example|host2\.example").cost("x" * 1000) == LITERALS_COST
    assert Pattern("web.*").cost("x" * 1000) > LITERALS_COST
