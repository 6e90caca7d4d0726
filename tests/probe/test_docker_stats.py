"""Container statistics from the engine's cumulative counters, across cycles."""

from __future__ import annotations

from typing import Any

import pytest

from trioscope_probe import _docker
from trioscope_probe._docker import ContainerCollector


def sample(cpu: int, system: int, rx: int, tx: int) -> dict[str, Any]:
    return {"cpu_stats": {"cpu_usage": {"total_usage": cpu}, "system_cpu_usage": system, "online_cpus": 2},
            "memory_stats": {"usage": 50 * 2**20, "limit": 200 * 2**20},
            "networks": {"eth0": {"rx_bytes": rx, "tx_bytes": tx}}, "pids_stats": {"current": 3}}


class Engine:
    def __init__(self, samples: list[dict[str, Any]]) -> None:
        self.samples = iter(samples)

    def stats(self, container_id: str, stream: bool) -> dict[str, Any]:
        return next(self.samples)


def test_rates_come_from_the_previous_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 110.0])
    monkeypatch.setattr(_docker.time, "monotonic", lambda: next(clock))
    engine = Engine([sample(1_000, 10_000, 500, 100), sample(2_000, 20_000, 10_500, 2_100)])
    collector = ContainerCollector(None)
    first = collector._stats(engine, "c1")
    assert first is not None and (first.cpu_percent, first.network_rx_bytes_per_sec) == (0.0, 0.0)
    second = collector._stats(engine, "c1")
    assert second is not None
    assert second.cpu_percent == pytest.approx(1_000 / 10_000 * 2 * 100)  # 20% of one core on 2 cores
    assert (second.network_rx_bytes_per_sec, second.network_tx_bytes_per_sec) == (1_000.0, 200.0)
    assert second.memory_percent == pytest.approx(25.0) and second.pids == 3


MiB = 2**20


@pytest.mark.parametrize(("stats", "in_use"), [
    # cgroup v1: the hierarchy's total (its own ``inactive_file`` leaves out its children's)
    ({"total_inactive_file": 30 * MiB, "inactive_file": 1 * MiB, "cache": 35 * MiB}, 20 * MiB),
    ({"inactive_file": 30 * MiB, "file": 35 * MiB, "anon": 15 * MiB}, 20 * MiB),  # cgroup v2
    ({"inactive_file": 60 * MiB}, 0),  # read a moment apart from usage: never below 0
    ({}, 50 * MiB),  # an engine without the cgroup's statistics (Podman's Docker API)
    (None, 50 * MiB),
], ids=["cgroup_v1", "cgroup_v2", "more_cache_than_usage", "no_stats", "stats_null"])
def test_memory_in_use_leaves_out_reclaimable_page_cache(stats: dict[str, int] | None, in_use: int) -> None:
    """As ``docker stats``: usage less the inactive file pages."""
    raw = sample(1_000, 10_000, 0, 0)
    raw["memory_stats"]["stats"] = stats
    found = ContainerCollector(None)._stats(Engine([raw]), "c1")
    assert found is not None
    assert found.memory_usage_mb == in_use / MiB
    assert found.memory_percent == pytest.approx(in_use / (200 * MiB) * 100)
