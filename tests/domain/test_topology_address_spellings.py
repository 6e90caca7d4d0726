"""Addresses are compared in one spelling: an IPv6 address written in full, in
capitals or with zeros (as some tools and kernels' tables print it) is the
same endpoint as its compressed form."""

from __future__ import annotations

import pytest

from tests.domain.test_topology import T0, edge_pairs, published, report
from trioscope.domain.topology import TopologyGraph, View, container_id, host_id, process_id
from trioscope.wire import normal_address


@pytest.mark.parametrize(("written", "normal"), [
    ("10.0.0.1", "10.0.0.1"),
    ("::ffff:10.0.0.1", "10.0.0.1"),
    ("::FFFF:10.0.0.1", "10.0.0.1"),
    ("::ffff:0a00:0001", "10.0.0.1"),
    ("2001:0db8:0000::0002", "2001:db8::2"),
    ("2001:DB8:0:0:0:0:0:2", "2001:db8::2"),
    ("2001:db8::2", "2001:db8::2"),
    ("0:0:0:0:0:0:0:0", "::"),
    ("0:0:0:0:0:0:0:1", "::1"),
    ("fe80::0001%eth0", "fe80::1%eth0"),
    ("*", "*"),
    ("", ""),
    ("not:an:address", "not:an:address"),
])
def test_one_spelling_per_address(written, normal):
    assert normal_address(written) == normal


def tcp6(**fields) -> dict:
    return {"protocol": "tcp6", **fields}


@pytest.mark.parametrize(("server_ip", "peer"), [
    ("2001:db8::2", "2001:0db8:0000::0002"),
    ("2001:0DB8::0002", "2001:db8::2"),
])
def test_a_connection_to_an_ipv6_address_in_another_spelling_resolves(server_ip, peer):
    graph = TopologyGraph()
    graph.apply(report("srv", "srv", ips=("10.8.0.2", server_ip), processes=[{"pid": 1, "name": "nginx"}],
                       connections=[tcp6(local_address="::", local_port=443, state="LISTEN", pid=1)]), T0)
    graph.apply(report("c6", "c6", ips=("2001:db8::5",), processes=[{"pid": 5, "name": "curl"}], connections=[
        tcp6(local_address="2001:db8::5", local_port=5000, remote_address=peer, remote_port=443,
             state="ESTABLISHED", pid=5)]), T0)
    assert edge_pairs(published(graph), View.PROCESSES) == {(process_id("c6", 5), process_id("srv", 1))}


def test_loopback_written_in_full_stays_on_its_host():
    graph = TopologyGraph()
    graph.apply(report("a", "ha", ips=("10.0.0.1", "0:0:0:0:0:0:0:1"), processes=[{"pid": 1}, {"pid": 2}], connections=[
        tcp6(local_address="0:0:0:0:0:0:0:1", local_port=6379, state="LISTEN", pid=2),
        tcp6(local_address="0:0:0:0:0:0:0:1", local_port=50000, remote_address="0:0:0:0:0:0:0:1", remote_port=6379,
             state="ESTABLISHED", pid=1),
    ]), T0)
    partition = graph.partitions["a"]
    # Reachable over loopback only: no other host's connection finds them.
    assert partition.listeners == {} and partition.addresses == {"10.0.0.1": host_id("ha")}
    assert edge_pairs(published(graph), View.PROCESSES) == {(process_id("ha", 1), process_id("ha", 2))}


@pytest.mark.parametrize("order", [("0.0.0.0", "::"), ("::", "0.0.0.0")])
@pytest.mark.parametrize("specific", [False, True])
def test_ipv4_clients_go_to_the_listener_on_0_0_0_0_and_ipv6_ones_to_the_one_on_the_ipv6_wildcard(
        order: tuple[str, str], specific: bool) -> None:
    """Beside a listener on 0.0.0.0 a listener on ``::`` of the same port can
    only be IPv6-only (the kernel refuses the dual-stack bind): whichever the
    report listed last took the other's clients. And a socket bound to the
    address itself takes that address's clients from both."""
    pids = {"0.0.0.0": 30, "::": 31}
    connections = [{"protocol": "tcp" if address == "0.0.0.0" else "tcp6", "local_address": address,
                    "local_port": 8080, "state": "LISTEN", "pid": pids[address]} for address in order]
    if specific:
        connections.append({"protocol": "tcp", "local_address": "10.9.1.1", "local_port": 8080, "state": "LISTEN",
                            "pid": 32})
    graph = TopologyGraph()
    graph.apply(report("s", "srv", T0, ips=("10.9.1.1", "fd00::1"),
                       processes=[{"pid": pid, "name": f"p{pid}"} for pid in (30, 31, 32)], connections=connections), T0)
    graph.apply(report("c", "cli", T0, ips=("10.9.1.2", "fd00::2"),
                       processes=[{"pid": 41, "name": "v4"}, {"pid": 42, "name": "v6"}],
                       connections=[
                           {"protocol": "tcp", "local_address": "10.9.1.2", "local_port": 50000,
                            "remote_address": "10.9.1.1", "remote_port": 8080, "state": "ESTABLISHED", "pid": 41},
                           {"protocol": "tcp6", "local_address": "fd00::2", "local_port": 50001,
                            "remote_address": "fd00::1", "remote_port": 8080, "state": "ESTABLISHED", "pid": 42}]),
                T0)
    assert edge_pairs(published(graph), View.PROCESSES) == {
        (process_id("cli", 41), process_id("srv", 32 if specific else 30)),
        (process_id("cli", 42), process_id("srv", 31))}


def test_a_lone_listener_on_the_ipv6_wildcard_takes_ipv4_clients_too() -> None:
    """Dual-stack, as Linux binds ``::`` unless told otherwise."""
    graph = TopologyGraph()
    graph.apply(report("s", "srv", T0, ips=("10.9.1.1",), processes=[{"pid": 31, "name": "web"}],
                       connections=[{"protocol": "tcp6", "local_address": "::", "local_port": 8080,
                                     "state": "LISTEN", "pid": 31}]), T0)
    graph.apply(report("c", "cli", T0, ips=("10.9.1.2",), processes=[{"pid": 41, "name": "v4"}],
                       connections=[{"protocol": "tcp", "local_address": "10.9.1.2", "local_port": 50000,
                                     "remote_address": "10.9.1.1", "remote_port": 8080, "state": "ESTABLISHED",
                                     "pid": 41}]), T0)
    assert edge_pairs(published(graph), View.PROCESSES) == {(process_id("cli", 41), process_id("srv", 31))}


def test_a_connection_to_a_containers_ipv6_address_is_an_edge_to_it() -> None:
    cid = "c" * 64
    graph = TopologyGraph()
    graph.apply(report("s", "srv", T0, ips=("10.9.1.1",), containers=[
        {"id": cid, "name": "/web", "state": "running",
         "networks": [{"name": "bridge", "ip_address": "172.17.0.2", "ipv6_address": "FD00:17::2"}]}],
        processes=[{"pid": 31, "name": "nginx", "container_id": cid}],
        connections=[{"protocol": "tcp6", "local_address": "::", "local_port": 80, "state": "LISTEN", "pid": 31}]), T0)
    graph.apply(report("c", "cli", T0, ips=("10.9.1.2",), processes=[{"pid": 41, "name": "curl"}],
                       connections=[{"protocol": "tcp6", "local_address": "fd00:17::9", "local_port": 50000,
                                     "remote_address": "fd00:17::2", "remote_port": 80, "state": "ESTABLISHED",
                                     "pid": 41}]), T0)
    assert edge_pairs(published(graph), View.PROCESSES) == {(process_id("cli", 41), process_id("srv", 31))}
    assert published(graph).node(container_id(cid)).metadata["networks"] == {"bridge": "172.17.0.2, FD00:17::2"}
