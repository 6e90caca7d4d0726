"""The memory budget per agent: a report's footprint, estimated before merging,
counts what ``build_partition`` makes of it; the cheap bound never clears a
report the exact count would refuse."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.synthetic import host_report
from trioscope.domain.agents import PackedReport
from trioscope.domain.topology import View, build_partition
from trioscope.wire import MemoryBudget, OverBudget, decode_report
from trioscope.wire._footprint import AGENT_BYTES, HOST_METRICS, JSON_DIVISOR, VIEWS, ring_bytes

T0 = 1_800_000_000.0
DEFAULT = MemoryBudget(limit=4 * 1024**2, history=3600.0, process_history=900.0)


def body_of(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document)


def footprint_of(document: dict[str, Any], budget: MemoryBudget = DEFAULT):
    body = body_of(document)
    return budget.footprint(decode_report(orjson.loads(body)), len(body))


def test_a_realistic_host_fits_the_default_budget() -> None:
    document = host_report(1, timestamp=T0, containers=20, processes=300, connections=2000, peers=[2, 3])
    body = body_of(document)
    footprint = DEFAULT.check(decode_report(document), body) or DEFAULT.footprint(decode_report(document), len(body))
    assert footprint.bytes < DEFAULT.limit * 0.8


def test_a_report_of_20000_processes_is_over_the_default_budget_naming_its_parts() -> None:
    document = host_report(1, timestamp=T0, containers=10, processes=20_000, connections=200, peers=[2])
    with pytest.raises(OverBudget) as raised:
        DEFAULT.check(decode_report(document), body_of(document))
    assert raised.value.limit == DEFAULT.limit
    # host, containers, processes, 5 pods (the even containers) and their 2 services (app web-0, web-2)
    assert raised.value.footprint.nodes == 1 + 10 + 20_000 + 5 + 2
    assert raised.value.footprint.bytes > 40 * 1024**2
    assert "4.0 MiB" in str(raised.value) and "20018 nodes" in str(raised.value)


def test_the_footprint_counts_what_the_partition_holds() -> None:
    document = host_report(3, timestamp=T0, containers=6, processes=40, connections=120, peers=[4, 5])
    # A process in a container the engine did not report (an inferred container node).
    document["processes_info"]["processes"].append({"pid": 9999, "cgroup": "0::/kubepods/pod1/" + "f" * 64 + "\n"})
    document["network_info"]["connections"].append(
        {"protocol": "udp", "local_address": "0.0.0.0", "local_port": 53, "pid": 9999})
    report = decode_report(document)
    partition = build_partition(report, T0)
    footprint = footprint_of(document)
    assert footprint.nodes == len(partition.nodes) + len(partition.pods) + len(partition.services)
    assert footprint.outgoing == len(partition.outgoing)
    assert footprint.endpoints >= len(partition.listeners) + len(partition.local_listeners)
    assert footprint.views == 6 == VIEWS == len(View)


def test_the_footprint_counts_what_the_partition_holds_with_network_namespaces() -> None:
    # A container listening on 0.0.0.0:40000 in its own namespace, and a host
    # client whose ephemeral port is 40000: still a client, counted as one.
    document = host_report(3, timestamp=T0, containers=2, processes=10, connections=20, peers=[4])
    network = document["network_info"]
    network["netns"] = 4026531840
    pid = document["processes_info"]["processes"][0]["pid"]
    network["connections"] += [
        {"protocol": "tcp", "local_address": "0.0.0.0", "local_port": 40000, "state": "LISTEN", "pid": pid,
         "netns": 4026532600},
        {"protocol": "tcp", "local_address": "10.0.0.3", "local_port": 40000, "remote_address": "192.0.2.99",
         "remote_port": 5432, "state": "ESTABLISHED"}]
    partition = build_partition(decode_report(document), T0)
    footprint = footprint_of(document)
    assert ("tcp", "192.0.2.99", 5432) in {c[1:] for c in partition.outgoing}
    assert footprint.outgoing == len(partition.outgoing)
    assert footprint.endpoints >= len(partition.listeners) + len(partition.local_listeners)


def test_a_wildcard_socket_counts_once_per_address_of_the_host() -> None:
    document = host_report(1, timestamp=T0, containers=0, processes=2, connections=0)
    document["host_info"]["ip_addresses"] = [f"10.0.0.{k}" for k in range(1, 17)] + ["127.0.0.1"]
    document["network_info"]["connections"] = [
        {"protocol": "tcp", "local_address": "0.0.0.0", "local_port": 1 + k, "state": "LISTEN", "pid": 1000}
        for k in range(10)]
    partition = build_partition(decode_report(document), T0)
    assert footprint_of(document).endpoints == 10 * (16 + 1) == len(partition.listeners) + len(partition.local_listeners)


def test_text_that_is_not_ascii_counts_four_bytes_a_character() -> None:
    plain = host_report(1, timestamp=T0, containers=0, processes=1, connections=0)
    plain["processes_info"]["processes"][0]["cmdline"] = "x" * 1000
    wide = json.loads(json.dumps(plain))
    wide["processes_info"]["processes"][0]["cmdline"] = "x" * 999 + "\U0001F600"
    # One wide character makes the process strings' whole section count wide
    # (command line, name, user and status): cheaper to find than per string.
    process = plain["processes_info"]["processes"][0]
    characters = sum(len(process[key]) for key in ("cmdline", "name", "user", "status"))
    assert footprint_of(wide).text - footprint_of(plain).text == 3 * characters


@pytest.mark.parametrize("escaped", [False, True])
def test_the_check_counts_exactly_when_the_bound_cannot_clear_the_report(escaped: bool) -> None:
    document = host_report(1, timestamp=T0, containers=2, processes=10, connections=10, peers=[2])
    document["processes_info"]["processes"][0]["cmdline"] = "caf\u00e9"
    body = json.dumps(document, ensure_ascii=escaped).encode()  # "\u00e9" escaped, or raw UTF-8
    footprint = DEFAULT.check(decode_report(orjson.loads(body)), body)
    assert footprint is not None and footprint.bytes <= DEFAULT.limit


def test_packed_bytes_beyond_the_estimates_share_for_them_are_charged_exactly() -> None:
    """The server keeps the report packed as it came: random text under a key
    the model does not know was charged an eighth of its size (JSON_DIVISOR)."""
    document = host_report(1, timestamp=T0, containers=1, processes=5, connections=5)
    document["attachment"] = base64.b64encode(random.Random(1).randbytes(1536 * 1024)).decode()
    body = body_of(document)
    report = decode_report(orjson.loads(body))
    packed = len(PackedReport.pack(body).data)
    budget = MemoryBudget(limit=1024**2, history=3600.0, process_history=900.0)
    unpacked = budget.footprint(report, len(body))
    assert unpacked.bytes < budget.limit < packed  # the estimate alone let it in
    with pytest.raises(OverBudget) as raised:
        budget.check(report, body, packed)
    charged = raised.value.footprint
    assert charged.packed == packed and "1.5 MiB packed" in str(raised.value)
    assert charged.bytes == unpacked.bytes + packed - unpacked.text - len(body) // JSON_DIVISOR
    assert budget.bound(report, len(body), packed).bytes >= charged.bytes


def test_a_report_of_known_keys_packs_within_the_estimates_share() -> None:
    document = host_report(1, timestamp=T0, containers=20, processes=300, connections=2000, peers=[2, 3])
    body = body_of(document)
    report = decode_report(document)
    packed = len(PackedReport.pack(body).data)
    # What a probe estimates (no packed size) is what the server charges.
    assert DEFAULT.footprint(report, len(body), packed).bytes == DEFAULT.footprint(report, len(body)).bytes


def test_the_estimate_includes_the_metric_history_the_server_keeps() -> None:
    document = host_report(1, timestamp=T0, containers=10, processes=10, connections=0)
    day = MemoryBudget(limit=DEFAULT.limit, history=86400.0, process_history=900.0)
    grown = footprint_of(document, day).bytes - footprint_of(document).bytes
    buckets = (86400 - 3600) // 15
    # the host, 10 containers (4 metrics), 5 pods and 2 services (3 metrics); processes keep 15 minutes
    assert grown == 4 * buckets * (HOST_METRICS + 10 * 4 + 5 * 3 + 2 * 3)


def test_an_empty_report_costs_the_agent_and_its_host_history() -> None:
    footprint = footprint_of({"agent_id": "a", "timestamp": "2027-01-15T08:00:00Z"})
    assert footprint.nodes == 1
    assert AGENT_BYTES + ring_bytes(HOST_METRICS, 3600.0) <= footprint.bytes < AGENT_BYTES + 64 * 1024


SIZES = st.fixed_dictionaries({
    "containers": st.integers(0, 12), "processes": st.integers(0, 60), "strays": st.integers(0, 5),
    "connections": st.integers(0, 150), "addresses": st.integers(0, 4), "labels": st.integers(0, 30),
    "ports": st.integers(0, 3), "networks": st.integers(0, 3), "cmdline": st.integers(0, 300),
    "peers": st.integers(0, 3),
})


@settings(max_examples=80, deadline=None)
@given(SIZES)
def test_the_bound_is_never_below_the_exact_footprint(sizes: dict[str, int]) -> None:
    document = host_report(7, timestamp=T0, containers=sizes["containers"], processes=sizes["processes"],
                           connections=sizes["connections"], peers=list(range(8, 8 + sizes["peers"])))
    document["host_info"]["ip_addresses"] = [f"10.7.0.{k + 1}" for k in range(sizes["addresses"])]
    for k, c in enumerate(document["docker_info"]["containers"]):
        c["labels"].update({f"label-{j}": "v" * j for j in range(sizes["labels"])})
        c["ports"] = [{"container_port": 80 + j, "host_port": 8000 + 10 * k + j} for j in range(sizes["ports"])]
        c["networks"] = [{"name": f"n{j}", "ip_address": f"172.18.{k}.{j + 2}"} for j in range(sizes["networks"])]
    for p in document["processes_info"]["processes"]:
        p["cmdline"] = "c" * sizes["cmdline"]
    # Processes in containers the engine did not report, listening on every address.
    document["processes_info"]["processes"] += [{"pid": 90_000 + k, "container_id": f"{k:064x}"}
                                                for k in range(sizes["strays"])]
    document["network_info"]["connections"] += [
        {"protocol": "udp", "local_address": "::", "local_port": 5000 + k, "pid": 90_000 + k}
        for k in range(sizes["strays"])]
    body = body_of(document)
    report = decode_report(orjson.loads(body))
    bound, exact = DEFAULT.bound(report, len(body)), DEFAULT.footprint(report, len(body))
    for part in ("nodes", "endpoints", "outgoing", "views", "items", "text", "bytes"):
        assert getattr(bound, part) >= getattr(exact, part), part
