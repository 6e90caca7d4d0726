"""The probe's publisher pieces: backoff, the outbox of unsent reports, and
reports fitted to the memory the server gives each agent."""

from __future__ import annotations

import gzip
import random

import attrs
import orjson
import pytest

from tests.synthetic import host_report
from trioscope.wire import MemoryBudget, decode_report
from trioscope_probe._transport import MEMORY_BUDGET, Backoff, Outbox, encode_report, stated_budget


class _Extreme(random.Random):
    """Draws the top (or the bottom) of every range: the waits show the backoff's bounds."""

    def __init__(self, top: bool) -> None:
        super().__init__(0)
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self.top else a


def test_backoff_grows_exponentially_within_a_cap_and_resets() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=_Extreme(top=True))
    assert [backoff.next() for _ in range(6)] == [1, 2, 4, 8, 8, 8]  # the ceilings double up to the cap
    backoff.reset()
    assert backoff.attempts == 0 and backoff.next() == 1.0


def test_backoff_waits_at_least_a_fifth_of_a_second() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=_Extreme(top=False))
    assert [backoff.next() for _ in range(3)] == [0.2, 0.2, 0.2]


def test_backoff_is_jittered() -> None:
    waits = {Backoff(base=1.0, cap=60.0, attempts=5, rng=random.Random(seed)).next() for seed in range(20)}
    assert len(waits) > 10


def test_outbox_drops_the_oldest_and_counts_them() -> None:
    outbox = Outbox(limit=3)
    for n in range(5):
        outbox.add(bytes([n]))
    assert list(outbox.reports) == [b"\x02", b"\x03", b"\x04"] and outbox.dropped == 2


def sent(body: bytes) -> tuple[bytes, dict]:
    raw = gzip.decompress(body)
    return raw, orjson.loads(raw)


@pytest.mark.parametrize("processes", [100, 1000])
def test_a_report_over_the_memory_budget_leaves_connections_out_then_processes(processes: int) -> None:
    budget = MemoryBudget(limit=1024**2, history=3600.0, process_history=900.0)
    report = decode_report(host_report(1, timestamp=1_800_000_000.0, containers=4, processes=processes,
                                       connections=3000, peers=[2, 3, 4, 5]))
    listening = [c for c in report.network_info.connections if c.state == "LISTEN"]
    body, dropped = encode_report(report, budget=budget)
    raw, document = sent(body)
    fitted = decode_report(document)
    # What the server will estimate of this very body fits.
    assert budget.footprint(fitted, len(raw)).bytes <= budget.limit
    kept_connections, kept_processes = fitted.network_info.connections, fitted.processes_info.processes
    assert dropped == 3000 + processes - len(kept_connections) - len(kept_processes) > 0
    if len(kept_processes) == processes:  # connections alone were enough: listening sockets stay
        assert set(listening) <= set(kept_connections) and len(kept_connections) < 3000
    else:  # processes only once every connection is out
        assert kept_connections == [] and 0 < len(kept_processes) < processes
        assert kept_processes == report.processes_info.processes[:len(kept_processes)]


def test_listening_sockets_stay_as_the_collector_names_them() -> None:
    # The probe's collector writes psutil's states in lower case ("listen"), in
    # the kernel's order: here the listeners last.
    budget = MemoryBudget(limit=1024**2, history=3600.0, process_history=900.0)
    report = decode_report(host_report(1, timestamp=1_800_000_000.0, containers=4, processes=100,
                                       connections=3000, peers=[2, 3, 4, 5]))
    report = attrs.evolve(report, network_info=attrs.evolve(report.network_info, connections=[
        attrs.evolve(c, state=c.state.lower()) for c in reversed(report.network_info.connections)]))
    listening = [c for c in report.network_info.connections if c.state == "listen"]
    kept = decode_report(sent(encode_report(report, budget=budget)[0])[1]).network_info.connections
    assert listening and set(listening) <= set(kept) and len(kept) < 3000


def test_a_report_within_the_budget_or_with_no_budget_is_sent_whole() -> None:
    report = decode_report(host_report(1, timestamp=1_800_000_000.0, processes=3000, connections=10, peers=[2]))
    assert encode_report(report)[1] > 0  # over the default budget
    body, dropped = encode_report(report, budget=None)
    assert dropped == 0 and len(sent(body)[1]["processes_info"]["processes"]) == 3000
    small = decode_report(host_report(1, timestamp=1_800_000_000.0, processes=50, connections=100, peers=[2]))
    assert encode_report(small)[1] == 0


def test_the_budget_is_learned_from_what_the_server_states() -> None:
    assert stated_budget({"memory_budget_bytes": 2 * 1024**2, "metric_history_seconds": 7200,
                          "process_metric_history_seconds": 900.0}) == MemoryBudget(
        limit=2 * 1024**2, history=7200.0, process_history=900.0)
    assert stated_budget({"max_report_bytes": 1024**2}) is None  # a server from before budgets


@pytest.mark.parametrize("damaged", [
    {"memory_budget_bytes": "4MiB"}, {"memory_budget_bytes": True}, {"memory_budget_bytes": 4096},
    {"memory_budget_bytes": 1024**2, "metric_history_seconds": "1h", "process_metric_history_seconds": 900},
    {"memory_budget_bytes": 1024**2, "metric_history_seconds": float("nan"), "process_metric_history_seconds": 9},
])
def test_a_damaged_budget_keeps_the_default(damaged: dict) -> None:
    assert stated_budget(damaged) == MEMORY_BUDGET
