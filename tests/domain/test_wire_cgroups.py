"""Which container a process is in, from its ``/proc/<pid>/cgroup``: every
runtime's layout, the engines' monitors (conmon) and Podman pods' own cgroups,
which name an id but are no container, and what that means for the topology."""

from __future__ import annotations

import pytest

from tests.domain.test_topology import C1, C2, T0, connect, edge_pairs, listen, published, report
from trioscope.domain.topology import NodeKind, TopologyGraph, View, container_id, process_id
from trioscope.wire import ContainerIds, ProcessInfo, container_id_from_cgroup

POD = "d" * 64


def v1(path: str) -> str:
    """A cgroup v1 text (with the v2 line a hybrid host adds) for a process in ``path``."""
    return "".join(f"{n}:{c}:{path}\n" for n, c in ((9, "name=systemd"), (8, "pids"), (4, "memory"), (1, "cpu"))) \
        + "0::/\n"


LAYOUTS = [
    # Docker
    ("docker cgroupfs", f"12:memory:/docker/{C1}\n", C1),
    ("docker systemd", f"0::/system.slice/docker-{C1}.scope\n", C1),
    ("docker in docker", f"0::/docker/{C2}/docker/{C1}\n", C1),
    # Podman, cgroupfs manager
    ("podman cgroupfs", f"0::/libpod_parent/libpod-{C1}\n", C1),
    ("podman cgroupfs conmon", "8:pids:/libpod_parent/conmon\n0::/\n", None),
    ("podman cgroupfs pod container", v1(f"/libpod_parent/{POD}/libpod-{C1}"), C1),
    ("podman cgroupfs pod conmon", v1(f"/libpod_parent/{POD}/conmon"), None),
    ("podman cgroupfs pod itself", v1(f"/libpod_parent/{POD}"), None),
    # Podman, systemd manager
    ("podman systemd", f"0::/machine.slice/libpod-{C1}.scope\n", C1),
    ("podman systemd split", f"0::/machine.slice/libpod-{C1}.scope/container\n", C1),
    ("podman systemd conmon", f"0::/machine.slice/libpod-conmon-{C1}.scope\n", None),
    ("podman systemd pod container", f"0::/machine.slice/machine-libpod_pod_{POD}.slice/libpod-{C1}.scope\n", C1),
    ("podman systemd pod conmon", f"0::/machine.slice/machine-libpod_pod_{POD}.slice/libpod-conmon-{C1}.scope\n",
     None),
    ("podman rootless", f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{C1}.scope\n", C1),
    # containerd, CRI-O, Kubernetes
    ("containerd", f"0::/system.slice/containerd.service/k8s.io/{C1}\n", C1),
    ("kubepods systemd containerd",
     f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice/cri-containerd-{C1}.scope\n", C1),
    ("kubepods systemd crio", f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9.slice/crio-{C1}.scope\n",
     C1),
    ("kubepods crio conmon", f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9.slice/crio-conmon-{C1}.scope\n",
     None),
    ("kubepods cgroupfs", f"11:cpu:/kubepods/burstable/pod0b6c-11ee/{C1}\n", C1),
    # no container
    ("user session", "0::/user.slice/user-1000.slice/session-2.scope\n", None),
    ("root", "0::/\n", None),
    ("empty", "", None),
]


@pytest.mark.parametrize(("text", "expected"), [layout[1:] for layout in LAYOUTS], ids=[layout[0] for layout in LAYOUTS])
def test_the_container_each_layout_names(text: str, expected: str | None) -> None:
    assert container_id_from_cgroup(text) == expected


def test_a_monitor_an_older_probe_placed_in_its_pod_is_in_no_container() -> None:
    """Older probes read the pod's id from conmon's cgroup and sent it as its
    ``container_id``; a process whose cgroup names its container keeps the one sent."""
    ids = ContainerIds([C1])
    conmon = ProcessInfo(pid=5, container_id=POD, cgroup=v1(f"/libpod_parent/{POD}/conmon"))
    assert ids.resolve(conmon) is None
    app = ProcessInfo(pid=6, container_id=C1[:12], cgroup=v1(f"/libpod_parent/{POD}/libpod-{C1}"))
    assert ids.resolve(app) == C1
    elsewhere = ProcessInfo(pid=7, container_id=C2, cgroup="0::/\n")  # a cgroup namespace: the sender knows better
    assert ids.resolve(elsewhere) == C2


@pytest.mark.parametrize("sent_id", [None, POD], ids=["cgroup_only", "older_probe"])
def test_a_pods_published_port_reaches_its_app_not_its_conmon(sent_id: str | None) -> None:
    """``podman pod create -p 18931:8080`` with an app listening on 8080: the
    pod's conmon (cgroupfs manager) holds 18931 on the host; a host client's
    connection there reaches the app, and no container is made up for the pod."""
    infra, conmon, app, client = 21050, 21040, 21071, 300
    network = [{"name": "podman", "ip_address": "10.88.0.53"}]
    ports = [{"container_port": 8080, "host_port": 18931}]
    graph = TopologyGraph()
    graph.apply(report(
        "b", "hb", ips=("192.0.2.2",),
        containers=[{"id": C1, "name": "/app", "ports": ports, "networks": network},
                    {"id": C2, "name": "/pod-infra", "ports": ports, "networks": network}],
        processes=[{"pid": conmon, "name": "conmon", "cgroup": v1(f"/libpod_parent/{POD}/conmon"),
                    "container_id": sent_id},
                   {"pid": infra, "name": "catatonit", "cgroup": v1(f"/libpod_parent/{POD}/libpod-{C2}")},
                   {"pid": app, "name": "nc", "cgroup": v1(f"/libpod_parent/{POD}/libpod-{C1}")},
                   {"pid": client, "name": "python3", "cgroup": "0::/user.slice\n"}],
        connections=[listen(18931, conmon), listen(8080, app),
                     {**connect("127.0.0.1", 18931, client), "local_address": "127.0.0.1"}],
    ), T0)
    snap = published(graph)
    assert snap.node(container_id(POD)) is None
    assert {n.id for n in snap.nodes(View.CONTAINERS) if n.kind is NodeKind.CONTAINER} == {container_id(C1),
                                                                                          container_id(C2)}
    assert snap.node(process_id("hb", conmon)).parent != container_id(POD)
    assert (process_id("hb", client), process_id("hb", app)) in edge_pairs(snap, View.PROCESSES)
    assert not {pair for pair in edge_pairs(snap, View.PROCESSES) if process_id("hb", conmon) in pair}
