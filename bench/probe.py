"""Probe cost per collection cycle (issue 7): CPU seconds and RSS of the probe's
collectors on a host with about 300 processes and 20 containers, against a plain
``psutil.process_iter`` full scan (``as_dict()`` of every process) measured in
the same run, each in a fresh process.

    .venv/bin/python bench/probe.py [--cycles 10] [--containers 20] [--processes 300]

Targets: below 2% of one core at the 15 s interval (under 0.3 s of CPU per
cycle) and below 60 MB RSS. Starts a container engine of its own (tests/engine.py);
everything started is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import docker
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.engine import ContainerEngine  # noqa: E402

MEASURE = textwrap.dedent("""
    import json, sys, time, resource, psutil
    kind, cycles, docker_host = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if kind == "probe":
        from trioscope_probe._collect import ReportCollector
        from trioscope_probe._docker import ContainerCollector
        from trioscope_probe._transport import encode_report
        collector = ReportCollector("bench", containers=ContainerCollector(docker_host))
        def cycle():
            return encode_report(collector.collect())
    else:
        def cycle():
            rows = []
            for p in psutil.process_iter():
                try:
                    rows.append(p.as_dict())
                except psutil.Error:
                    pass
            return rows
    cycle()  # warm: imports, first samples
    start = time.process_time()
    for _ in range(cycles):
        out = cycle()
    cpu = (time.process_time() - start) / cycles
    me = psutil.Process()
    info = {"cpu_per_cycle": cpu, "rss_mb": me.memory_info().rss / 2**20}
    if kind == "probe":
        report = collector.collect()
        info["processes"] = len(report.processes_info.processes)
        info["containers"] = len(report.docker_info.containers) if report.docker_info else 0
        info["connections"] = len(report.network_info.connections)
        info["bytes"] = len(out)
    print(json.dumps(info))
""")


def measure(kind: str, cycles: int, docker_host: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", MEASURE, kind, str(cycles), docker_host], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--processes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with ContainerEngine() as docker_host:
        run(args, docker_host)


def run(args: argparse.Namespace, docker_host: str) -> None:
    client = docker.DockerClient(base_url=docker_host)
    containers, sleepers = [], []
    try:
        for n in range(args.containers):
            containers.append(client.containers.run("localhost/busybox:latest", ["sleep", "3600"], detach=True,
                                                    name=f"bench-probe-{os.getpid()}-{n}"))
        missing = max(0, args.processes - len(psutil.pids()))
        sleepers = [subprocess.Popen(["sleep", "3600"]) for _ in range(missing)]
        print(f"host: {len(psutil.pids())} processes, {args.containers} containers; {args.cycles} cycles per round")
        ratios = []
        for round_ in range(1, args.rounds + 1):
            base = measure("baseline", args.cycles, docker_host)
            probe = measure("probe", args.cycles, docker_host)
            ratio = probe["cpu_per_cycle"] / base["cpu_per_cycle"]
            ratios.append((ratio, probe, base))
            print(f"round {round_}: psutil full scan {base['cpu_per_cycle'] * 1000:6.1f} ms/cycle "
                  f"({base['rss_mb']:.1f} MB) | probe {probe['cpu_per_cycle'] * 1000:6.1f} ms/cycle "
                  f"({probe['rss_mb']:.1f} MB; {probe['processes']} processes, {probe['containers']} containers, "
                  f"{probe['connections']} connections, {probe['bytes']} bytes gzip) | ratio {ratio:.2f}x")
        ratios.sort(key=lambda r: r[0])
        ratio, probe, base = ratios[len(ratios) // 2]
        share = probe["cpu_per_cycle"] / 15.0 * 100
        print(f"median: probe {probe['cpu_per_cycle'] * 1000:.1f} ms of CPU per cycle = {share:.2f}% of one core "
              f"at 15 s (target < 2%: {'met' if share < 2 else 'MISSED'}); RSS {probe['rss_mb']:.1f} MB "
              f"(target < 60 MB: {'met' if probe['rss_mb'] < 60 else 'MISSED'}); {ratio:.2f}x a plain psutil scan")
    finally:
        for container in containers:
            container.remove(force=True)
        for sleeper in sleepers:
            os.kill(sleeper.pid, signal.SIGKILL)
            sleeper.wait()
        client.close()


if __name__ == "__main__":
    main()
