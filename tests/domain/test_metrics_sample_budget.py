"""Samples have a budget of their own, per tenant and over all: bounded by
series alone, one tenant's 100,000 series backfilled over a day's retention
held ~9 GB (a reviewer's measure: ~4.8 KB a series more after an hour's
backfill). The counts follow what the store holds as samples come, give way
in their bucket, age out and leave with their series."""

import pytest

from trioscope.domain import metrics

NOW = 1_000_000.0
RETENTION = 3600.0


def store(**limits: int) -> metrics.MetricStore:
    return metrics.MetricStore(metrics.StoreLimits(max_series_per_deployment=1000, max_series_per_tenant=1000,
                                                   retention=RETENTION, **limits))


def points(name: str, times: list[float], **labels: str) -> list[metrics.Sample]:
    key = tuple(sorted({"__name__": name, **labels}.items()))
    return [metrics.Sample(key, 1.0, t) for t in times]


def held(found: metrics.MetricStore) -> int:
    return found.stats().samples


def test_a_tenants_samples_past_its_budget_are_refused_whole_and_other_tenants_write_on() -> None:
    found = store(max_samples_per_tenant=100)
    found.write("acme", "d1", points("m", [NOW - 15 * k for k in range(90)]), NOW)
    with pytest.raises(metrics.WriteLimitExceeded) as refused:
        found.write("acme", "d1", points("n", [NOW - 15 * k for k in range(11)]), NOW)
    assert refused.value.code == "tenant_samples_limit_reached"
    assert refused.value.config_key == "metrics.max_samples_per_tenant"
    assert held(found) == 90  # nothing of the refused write
    found.write("acme", "d1", points("n", [NOW - 15 * k for k in range(10)]), NOW)
    found.write("beta", "d2", points("m", [NOW - 15 * k for k in range(100)]), NOW)
    assert held(found) == 200


def test_the_servers_samples_past_its_budget_are_refused() -> None:
    found = store(max_samples=150)
    found.write("acme", "d1", points("m", [NOW - 15 * k for k in range(100)]), NOW)
    with pytest.raises(metrics.WriteLimitExceeded) as refused:
        found.write("beta", "d2", points("m", [NOW - 15 * k for k in range(51)]), NOW)
    assert refused.value.code == "server_samples_limit_reached"


def test_samples_that_age_out_or_leave_with_their_series_make_room_again() -> None:
    found = store(max_samples_per_tenant=100)
    found.write("acme", "d1", points("m", [NOW - 15 * k for k in range(60)], agent_id="a"), NOW)
    found.write("acme", "d1", points("n", [NOW - 15 * k for k in range(40)], agent_id="b"), NOW)
    with pytest.raises(metrics.WriteLimitExceeded):
        found.write("acme", "d1", points("o", [NOW]), NOW)
    later = NOW + RETENTION - 300
    found.expire(later)  # what is older than 300 s before NOW has aged out
    assert held(found) == 21 + 21
    found.write("acme", "d1", points("o", [later - 15 * k for k in range(40)]), later)
    assert held(found) == 82
    assert found.remove_with("agent_id", "b") == 1
    found.write("acme", "d1", points("p", [later - 15 * k for k in range(39)]), later)
    assert held(found) == 100
    with pytest.raises(metrics.WriteLimitExceeded):  # the store's count is what it holds
        found.write("acme", "d1", points("q", [later]), later)


def test_samples_that_replace_one_of_their_bucket_add_nothing_to_the_count() -> None:
    found = store(max_samples_per_tenant=30)
    found.write("acme", "d1", points("m", [NOW - 15 * k for k in range(20)]), NOW)
    for _ in range(5):  # the same buckets written again, later within each: replaced, not added
        found.write("acme", "d1", points("m", [NOW - 15 * k + 1 for k in range(1, 10)]), NOW)
    assert held(found) == 20
    found.write("acme", "d1", points("m", [NOW - 15 * k - 7 for k in range(20, 30)]), NOW)  # older, new buckets
    assert held(found) == 30
