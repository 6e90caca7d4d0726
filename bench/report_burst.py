"""Hosts-view GETs during and right after a burst of reports from 1,000
distinct hosts, against GETs of the same server at rest, in the same run.

    .venv/bin/python bench/report_burst.py [--hosts 1000] [--rounds 3] [--baseline-ref COMMIT]

A real `trioscope serve` is loaded with ``--hosts`` hosts (one report each);
then, in rounds: ``--quiet`` sequential GETs of
``/api/v1/query/topology?view=hosts`` at rest; a burst, every host's next
report (1,000 distinct hosts, not a few agents re-sending) sent by a separate
load-generator process over 32 connections as fast as the server takes them,
while one client sends the same GET and ``/health`` (any other GET, on the same
loop) in turn; and, after a second burst with no GET during it, GETs after its last 202 (the
first of them: what issue 20 measured at 2.4-8.8 s).
``--new-hosts``: bursts of hosts never seen before (every node new) instead.

Target (issue 20): GET p95 during and after a burst like at rest ("answers
like any other GET"); the loop never held more than a few tens of ms.
``--baseline-ref``: the same rounds on the code of that commit too, alternated.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from servers import free_port, start, stop  # noqa: E402

HOSTS_VIEW = "/api/v1/query/topology?view=hosts"
HEALTH = "/health"
"""Any other GET: what the same loop answers during the burst without the topology."""
CONNECTIONS = 32


def source_of(ref: str, into: Path) -> Path:
    """The package ``trioscope`` as it was at ``ref``, importable from the returned directory."""
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into / "checkout", filter="data")
    (into / "path").mkdir()
    (into / "path" / "trioscope").symlink_to(into / "checkout" / "src")
    return into / "path"


def server(port: int, agents: int, source: Path | None, data: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "TRIOSCOPE_STORAGE_DATA_DIR": str(data)}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return start([sys.executable, "-m", "trioscope", "serve", "--host", "127.0.0.1", "--port", str(port),
                  "--log-level", "warning", "--local-probe", "false", "--max-agents", str(agents)], env)


def loadgen(port: int, hosts: int, first_agent: int) -> subprocess.Popen[str]:
    """Every one of ``hosts`` hosts' next report, once; returns when the generator is ready to send."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench/loadgen.py"), f"http://127.0.0.1:{port}/api/v1/reports",
         "--connections", str(CONNECTIONS), "--seconds", "600", "--hosts", str(hosts), "--requests", str(hosts),
         "--first-agent", str(first_agent)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    proc.stderr.readline()  # "ready": its reports are built
    return proc


def timed(client: httpx.Client, path: str = HOSTS_VIEW) -> float:
    started = time.perf_counter()
    client.get(path).raise_for_status()
    return time.perf_counter() - started


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def burst_done(burst: subprocess.Popen[str], hosts: int) -> None:
    out, _ = burst.communicate()
    statuses = json.loads(out)["statuses"]
    if statuses != {"202": hosts}:
        print(f"burst answered {statuses}", flush=True)


def run_round(client: httpx.Client, port: int, hosts: int, first_agent: int, quiet: int) -> dict[str, list[float]]:
    """GETs at rest; GETs back to back during a burst; a burst with no GET
    during it, then the first GET after its last 202 and more after that."""
    at_rest = [timed(client) for _ in range(quiet)]
    burst = loadgen(port, hosts, first_agent)
    during, health = [], []
    while burst.poll() is None:
        during.append(timed(client))
        health.append(timed(client, HEALTH))
    burst_done(burst, hosts)
    [timed(client) for _ in range(3)]  # merged, encoded: at rest again
    burst = loadgen(port, hosts, first_agent + hosts if first_agent else 0)
    burst_done(burst, hosts)
    after = [timed(client) for _ in range(quiet)]
    return {"quiet": at_rest, "during": during, "health during": health, "first after": after[:1], "after": after}


def measure(label: str, source: Path | None, args: argparse.Namespace, data: Path) -> list[dict[str, list[float]]]:
    port = free_port()
    data.mkdir()
    # --new-hosts: two bursts of new hosts a round, each host kept until it goes stale.
    agents = args.hosts * (2 * args.rounds + 2 if args.new_hosts else 4)
    proc = server(port, agents, source, data)
    rounds = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            load = loadgen(port, args.hosts, 0)
            load.communicate()
            deadline = time.monotonic() + 120
            while len(client.get(HOSTS_VIEW).json()["topology"]["nodes"]) < args.hosts:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{args.hosts} hosts not merged within 120 s")
                time.sleep(0.2)
            time.sleep(2.0)
            for round_no in range(1, args.rounds + 1):
                first = 2 * round_no * args.hosts if args.new_hosts else 0
                result = run_round(client, port, args.hosts, first, args.quiet)
                rounds.append(result)
                print(f"{label} round {round_no}: " + "  ".join(
                    f"{k} p50 {statistics.median(v) * 1e3:7.1f} p95 {p95(v) * 1e3:7.1f} ms (n={len(v)})"
                    for k, v in result.items()), flush=True)
    finally:
        stop(proc)
    return rounds


def summary(label: str, rounds: list[dict[str, list[float]]]) -> None:
    quiet = statistics.median(p95(r["quiet"]) for r in rounds)
    during = statistics.median(p95(r["during"]) for r in rounds)
    health = statistics.median(p95(r["health during"]) for r in rounds)
    first = statistics.median(r["first after"][0] for r in rounds)
    after = statistics.median(p95(r["after"]) for r in rounds)
    print(f"{label}: hosts-view GET p95 at rest {quiet * 1e3:.1f} ms, during the burst {during * 1e3:.1f} ms "
          f"({during / quiet:.1f}x; /health during it {health * 1e3:.1f} ms), first after it {first * 1e3:.1f} ms ({first / quiet:.1f}x), "
          f"p95 after it {after * 1e3:.1f} ms ({after / quiet:.1f}x) (medians of {len(rounds)} rounds)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quiet", type=int, default=30, help="GETs at rest, and after the burst, per round")
    parser.add_argument("--new-hosts", action="store_true", help="bursts of hosts never seen before")
    parser.add_argument("--baseline-ref", help="a commit whose code to measure too")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        sources: list[tuple[str, Path | None]] = [("this code", None)]
        if args.baseline_ref:
            sources.insert(0, (f"code of {args.baseline_ref}", source_of(args.baseline_ref, Path(scratch))))
        for index, (label, source) in enumerate(sources):
            results[label] = measure(label, source, args, Path(scratch) / f"data-{index}")
    for label, rounds in results.items():
        summary(label, rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
