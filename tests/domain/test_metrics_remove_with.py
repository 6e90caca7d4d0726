"""A probe's host series go from the store when the probe is forgotten, in
whichever tenant holds them, and make room under the store's limits."""

import pytest

from trioscope.domain import metrics

NOW = 1_000_000.0


def store(series: int) -> metrics.MetricStore:
    return metrics.MetricStore(metrics.StoreLimits(max_series_per_deployment=series, max_series_per_tenant=series,
                                                   retention=600.0))


def host(agent_id: str, *names: str) -> list[metrics.Sample]:
    return [metrics.Sample((("__name__", name), ("agent_id", agent_id)), 1.0, NOW) for name in names]


def test_every_series_with_the_label_goes_in_every_tenant_and_no_other():
    found = store(4)
    found.write("", "", host("gone", "cpu", "memory"), NOW)
    found.write("acme", "", host("gone", "cpu") + host("kept", "cpu"), NOW)
    assert found.remove_with("agent_id", "gone") == 3
    assert list(found) == ["acme"]
    assert [s.label_map["agent_id"] for s in found.tenant("acme").named("cpu")] == ["kept"]
    assert found.stats().series == 1
    assert found.remove_with("agent_id", "gone") == 0


def test_the_series_removed_make_room_for_new_ones():
    found = store(2)
    found.write("", "", host("old", "cpu", "memory"), NOW)
    with pytest.raises(metrics.WriteLimitExceeded):
        found.write("", "", host("new", "cpu"), NOW)
    found.remove_with("agent_id", "old")
    assert found.write("", "", host("new", "cpu", "memory"), NOW).new_series == 2
