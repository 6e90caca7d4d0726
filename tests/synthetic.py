"""Synthetic but realistic probe reports, as wire JSON, for tests and benchmarks.

A host has ``containers`` containers (every other one a Kubernetes pod member),
``processes`` processes (most inside containers, some found only through their
cgroup text), a few listening services, and client connections to its peers'
services. The default sizes give the benchmark's ~20 KB report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

SERVICE_PORTS = (5432, 8080, 6379)


def container_hex(agent_id: str, index: int) -> str:
    return hashlib.sha256(f"{agent_id}/{index}".encode()).hexdigest()


def host_ip(index: int) -> str:
    """A distinct address per host number (last octet 1..254)."""
    block, host = divmod(index, 254)
    return f"10.{block // 256 % 256}.{block % 256}.{host + 1}"


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def host_report(
    index: int,
    *,
    timestamp: float,
    containers: int = 10,
    processes: int = 100,
    connections: int = 200,
    peers: Sequence[int] = (),
    cpu: float = 25.0,
    agent_prefix: str = "agent",
    container_load: float = 0.0,
) -> dict[str, Any]:
    """The report of host number ``index``; ``peers`` are host numbers its
    clients connect to."""
    agent = f"{agent_prefix}-{index}"
    hostname = f"host-{index}"
    ip = host_ip(index)
    docker = []
    for c in range(containers):
        cid = container_hex(agent, c)
        labels = {"maintainer": "synthetic"}
        if c % 2 == 0:
            labels |= {
                "io.kubernetes.pod.name": f"web-{index}-{c}",
                "io.kubernetes.pod.namespace": "prod",
                "io.kubernetes.pod.uid": f"uid-{index}-{c}",
                "app": f"web-{c % 4}",
            }
        docker.append({
            "id": cid,
            "name": f"/svc-{index}-{c}",
            "image": f"registry.local/app-{c}:1.{c}",
            "state": "running" if c % 7 else "paused",
            "status": "Up 3 hours",
            "created": iso(timestamp - 3600),
            "labels": labels,
            "ports": [{"container_port": 8080, "protocol": "tcp", "host_port": 30000 + c}],
            "networks": [{"name": "bridge", "ip_address": f"172.17.{index % 250}.{c + 2}"}],
            "env_names": ["PATH", "HOME", "APP_MODE"],
            "stats": {"cpu_percent": 1.5 + c + container_load, "memory_usage_mb": 64.0 + c, "memory_limit_mb": 1024.0,
                      "memory_percent": 6.25, "network_rx_bytes": 1000 * c, "network_tx_bytes": 2000 * c},
        })
    procs = []
    for p in range(processes):
        pid = 1000 + p
        entry: dict[str, Any] = {
            "pid": pid, "ppid": 1 if p % 10 == 0 else 1000 + p - p % 10,
            "name": f"worker-{p % 13}", "cmdline": f"/usr/bin/worker-{p % 13} --serve --id={p}",
            "user": "app", "cpu_percent": (p % 17) * 0.5, "memory_rss_bytes": (20 + p % 50) * 1048576,
            "threads": 4, "status": "sleeping",
        }
        if containers and p % 10 != 9:
            cid = container_hex(agent, p % containers)
            if p % 3 == 0:
                entry["cgroup"] = f"0::/system.slice/docker-{cid}.scope\n"
            else:
                entry["container_id"] = cid[:12]
        procs.append(entry)
    conns: list[dict[str, Any]] = []
    for s, port in enumerate(SERVICE_PORTS):
        if s < len(procs):
            conns.append({"protocol": "tcp", "local_address": "0.0.0.0", "local_port": port,
                          "state": "LISTEN", "pid": procs[s * 10 + 9]["pid"] if len(procs) > s * 10 + 9 else procs[0]["pid"]})
    for n in range(max(0, connections - len(conns))):
        if not peers:
            break
        peer = peers[n % len(peers)]
        conns.append({
            "protocol": "tcp", "local_address": ip, "local_port": 40000 + n,
            "remote_address": host_ip(peer), "remote_port": SERVICE_PORTS[n % len(SERVICE_PORTS)],
            "state": "ESTABLISHED", "pid": procs[n % len(procs)]["pid"] if procs else None,
        })
    return {
        "agent_id": agent,
        "hostname": hostname,
        "timestamp": iso(timestamp),
        "host_info": {
            "hostname": hostname, "os": "linux", "platform": "debian", "kernel_version": "6.1.0",
            "architecture": "x86_64", "ip_addresses": [ip, "127.0.0.1"],
            "cpu_info": {"model": "Xeon", "cores": 8, "usage": cpu},
            "memory_info": {"total_mb": 16384, "used_mb": 8192, "free_mb": 8192, "available_mb": 8192, "usage": 50.0},
            "load_average": {"load1": 0.5, "load5": 0.4, "load15": 0.3},
            "disks": [{"mount_point": "/", "total_mb": 100000, "used_mb": 40000, "usage": 40.0}],
            "uptime_seconds": 86400,
            "network_rx_bytes_per_sec": 1000.0, "network_tx_bytes_per_sec": 500.0,
        },
        "docker_info": {"containers": docker},
        "processes_info": {"processes": procs},
        "network_info": {"connections": conns},
    }
