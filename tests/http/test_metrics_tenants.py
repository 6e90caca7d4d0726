"""``of_tenant``: what ``/metrics`` shows a reader of one tenant with
``--protect-reads`` (pure: families in, families out, no server)."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from trioscope.http._metrics import encode, of_tenant


def _families() -> list[Metric]:
    agents = GaugeMetricFamily("trydirect_agents_total", "Active enrolled agents", labels=["tenant"])
    for tenant, count in (("acme", 2), ("globex", 1), ("other", 7)):
        agents.add_metric([tenant], count)
    seen = GaugeMetricFamily("trydirect_agent_last_seen_seconds", "When each agent was last heard from",
                             labels=["agent", "deployment_hash", "tenant"])
    seen.add_metric(["agent-a", "hash-a", "acme"], 1.0)
    seen.add_metric(["agent-g", "hash-g", "globex"], 2.0)
    beats = HistogramMetricFamily("trydirect_agent_heartbeat_latency_seconds", "Seconds between requests",
                                  labels=["tenant"])
    beats.add_metric(["acme"], [("1.0", 1.0), ("+Inf", 2.0)], 31.0)
    beats.add_metric(["globex"], [("1.0", 0.0), ("+Inf", 1.0)], 15.0)
    server = CounterMetricFamily("app_reports_received", "Reports accepted")
    server.add_metric([], 12.0)
    return [agents, seen, beats, server]


def _series(families: list[Metric]) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {(s.name, tuple(sorted(s.labels.items()))) for family in families for s in family.samples}


def test_a_reader_sees_only_its_tenants_series_not_the_servers_own():
    shown = of_tenant(_families(), "acme")
    tenants = {s.labels.get("tenant") for family in shown for s in family.samples}
    assert tenants == {"acme"}
    names = {name for name, _ in _series(shown)}
    # No tenant label: the server's own figure, which counts every tenant's reports.
    assert "app_reports_received_total" not in names
    assert ("trydirect_agent_last_seen_seconds",
            (("agent", "agent-a"), ("deployment_hash", "hash-a"), ("tenant", "acme"))) in _series(shown)
    assert not any("agent-g" in str(labels) or "hash-g" in str(labels) for _, labels in _series(shown))
    # The whole histogram of its tenant: buckets, sum and count.
    assert {s.name for family in shown for s in family.samples if s.labels.get("tenant") == "acme"
            and s.name.startswith("trydirect_agent_heartbeat")} == {
        "trydirect_agent_heartbeat_latency_seconds_bucket", "trydirect_agent_heartbeat_latency_seconds_sum",
        "trydirect_agent_heartbeat_latency_seconds_count"}


def test_the_other_bucket_of_tenants_past_the_label_cap_is_nobodys_to_read():
    """``tenant="other"`` sums every tenant past the cap: not one reader's, even of a tenant named so."""
    for reader in ("other", "initech"):
        shown = of_tenant(_families(), reader)
        assert not [s for family in shown for s in family.samples], reader


def test_families_keep_help_and_type_and_the_exposition_stays_valid():
    families = _families()
    before = _series(families)
    shown = of_tenant(families, "initech")  # a tenant with no series at all
    assert _series(families) == before  # the input is left as it was
    text = encode(shown).decode()
    assert "# HELP trydirect_agents_total" in text and "# TYPE trydirect_agents_total gauge" in text
    parsed = {family.name: family for family in text_string_to_metric_families(text)}
    assert parsed["trydirect_agents_total"].samples == [] == parsed["app_reports_received"].samples
