"""Which interfaces a host's network rates count (``_uplinks``), on fake
``/sys`` and ``/proc`` trees: a bare-metal or virtual machine's NICs, not its
bridges, veths, ifb, VLANs, bonds or tunnels; in a container (no NIC) the
default route's interface."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import pytest

from trioscope_probe import _collect
from trioscope_probe._collect import _external_traffic
from trioscope_probe._uplinks import uplinks

ROUTE_HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
LOOPBACK_V6 = ("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
               "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n")


def host(root: Path, interfaces: dict[str, str], route: str = "", ipv6_route: str = LOOPBACK_V6) -> Path:
    """A fake tree: each interface of ``interfaces`` is ``device`` (a NIC),
    ``bridge``, ``brport`` (a port of a bridge) or ``plain`` (a veth, tunnel, ...)."""
    for name, kind in interfaces.items():
        directory = root / "sys" / "class" / "net" / name
        directory.mkdir(parents=True)
        if kind != "plain":
            (directory / kind).mkdir()
    (root / "proc" / "net").mkdir(parents=True)
    (root / "proc" / "net" / "route").write_text(ROUTE_HEADER + route)
    (root / "proc" / "net" / "ipv6_route").write_text(ipv6_route)
    return root


def default_v4(interface: str, flags: str = "0003") -> str:
    return f"{interface}\t00000000\t010200C0\t{flags}\t0\t0\t0\t00000000\t0\t0\t0\n"


def default_v6(interface: str) -> str:
    return (f"00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
            f"fd000000000000000000000000000001 00000400 00000003 00000000 00000003 {interface:>8}\n")


def test_a_host_with_containers_counts_its_nic_only(tmp_path: Path) -> None:
    root = host(tmp_path, {"lo": "plain", "eth0": "device", "podman0": "bridge", "veth0": "brport",
                           "docker0": "bridge", "vethab12": "brport", "cali5f3": "plain", "flannel.1": "plain",
                           "cni0": "bridge", "ifb0": "plain", "wg0": "plain", "tun0": "plain"},
                route=default_v4("wg0"))
    assert uplinks(["lo", "eth0", "podman0", "veth0", "docker0", "vethab12", "cali5f3", "flannel.1", "cni0", "ifb0",
                    "wg0", "tun0"], root) == {"eth0"}


def test_a_virtual_machines_nics_each_count_and_a_bond_or_vlan_over_them_does_not(tmp_path: Path) -> None:
    root = host(tmp_path, {"ens3": "device", "ens4": "device", "bond0": "plain", "bond0.100": "plain"},
                route=default_v4("bond0.100"))
    assert uplinks(["ens3", "ens4", "bond0", "bond0.100"], root) == {"ens3", "ens4"}


@pytest.mark.parametrize("route, ipv6_route", [(default_v4("eth0"), LOOPBACK_V6),
                                               ("", LOOPBACK_V6 + default_v6("eth0"))], ids=["ipv4", "ipv6_only"])
def test_without_a_nic_the_default_routes_interface_counts(tmp_path: Path, route: str, ipv6_route: str) -> None:
    """A container-based CI runner running containers itself: its eth0 is a
    veth like theirs, and it alone leads outside."""
    root = host(tmp_path, {"lo": "plain", "eth0": "plain", "docker0": "bridge", "veth9": "brport",
                           "cali1": "plain"}, route=route, ipv6_route=ipv6_route)
    assert uplinks(["lo", "eth0", "docker0", "veth9", "cali1"], root) == {"eth0"}


def test_a_route_that_is_down_or_not_a_default_one_leads_nowhere(tmp_path: Path) -> None:
    """Neither a default route down (flags without RTF_UP) nor a route to one
    network: then every interface but bridges and their ports."""
    root = host(tmp_path, {"eth0": "plain", "eth1": "plain", "podman0": "bridge", "veth0": "brport"},
                route=default_v4("eth1", flags="0002") + "eth1\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    assert uplinks(["lo", "eth0", "eth1", "podman0", "veth0"], root) == {"eth0", "eth1"}


def test_without_a_readable_sys_or_proc_every_interface_but_loopback_counts(tmp_path: Path) -> None:
    assert uplinks(["lo", "eth0", "venet0"], tmp_path) == {"eth0", "venet0"}


Counters = namedtuple("Counters", "bytes_recv bytes_sent")


def test_host_rates_count_the_nic_and_an_interface_that_comes_or_goes_adds_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = host(tmp_path, {"eth0": "device", "podman0": "bridge", "veth0": "brport", "eth1": "device"})
    samples = iter([
        {"lo": Counters(10**9, 10**9), "eth0": Counters(1_000, 2_000), "podman0": Counters(0, 0),
         "veth0": Counters(0, 0), "eth1": Counters(10**9, 10**9)},
        # 10 s later: eth0 got 5 kB and sent 1 kB; the containers' bridge and its
        # veth carried 3 MB; eth1 was unplugged, eth2 (a NIC plugged in) counts from its first sample.
        {"lo": Counters(2 * 10**9, 2 * 10**9), "eth0": Counters(6_000, 3_000), "podman0": Counters(3 * 10**6, 10**6),
         "veth0": Counters(10**6, 3 * 10**6), "eth2": Counters(10**8, 10**8)},
    ])
    monkeypatch.setattr(_collect.psutil, "net_io_counters", lambda pernic: next(samples))
    (root / "sys" / "class" / "net" / "eth2" / "device").mkdir(parents=True)
    first = _external_traffic(root)
    second = _external_traffic(root)
    assert second.rates_since((100.0, first), 110.0) == (500.0, 100.0)


def test_a_sys_the_probe_may_not_search_counts_as_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.11's ``Path.exists`` raises on EACCES: an unreadable
    /sys/class/net stopped the probe at start with a traceback."""
    root = host(tmp_path, {"eth0": "device"}, route=default_v4("eth0"))

    def refused(*_: object, **__: object) -> bool:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "exists", refused)
    monkeypatch.setattr("os.stat", lambda *a, **k: refused())
    assert uplinks(["lo", "eth0"], root) == {"eth0"}  # by its default route: the device cannot be seen
