"""The metrics API (issue 21): write throughput, embedded query latency over
10,000 series, and the overhead of proxying queries to VictoriaMetrics, each
against a baseline measured in the same run.

    .venv/bin/python bench/metrics_api.py [--seconds 5] [--rounds 5] [--concurrency 8] [--repeat 30]
                                          [--parts write,query,proxy]

1. write: points/s of InfluxDB line protocol through POST /api/v1/metrics/write
   (an enrolled agent, signed as the status agent signs), bodies of 1,000
   lines = 1,000 series, ``--concurrency`` requests in flight; baseline: a
   no-op Quart-Trio POST of the same body (bench/noop_server.py) from the same
   client. Targets alternate every ``--seconds``, ``--rounds`` rounds; the
   median of the rounds' ratios is reported.
2. query: the embedded engine with 10,000 series of 30 minutes at 15 s
   (1.2 M samples: 9,000 counters over 1,000 hosts x 9 cpus, and 100 hosts' x
   10-bucket histograms), written through the API; p50/p95 of instant and
   range queries, ``--repeat`` times each, one at a time; baseline: GET
   /health of the same server, in the same loop.
3. proxy: the same series written to VictoriaMetrics through trioscope
   (--metrics-url); each query through /prometheus/api/v1/query[_range]
   against the same query sent to VictoriaMetrics directly (with the
   extra_label trioscope adds), interleaved; p50/p95 and the ratio of p50s.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import servers  # noqa: E402 - bench/ is not a package

from trioscope.domain.principals import Role, mint_user_token  # noqa: E402

SECRET = "bench-secret-for-trioscope-metrics-api-only-0123456789"
FAST_LIMITS = ["--rate-per-agent", "1000000", "--rate-per-user", "1000000", "--rate-per-address", "1000000"]
HOSTS, CPUS, HISTOGRAM_HOSTS = 1000, 9, 100
BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf")
HISTORY = 120  # 30 minutes at 15 s
INSTANT = {
    "one host": 'node_cpu_seconds_total{host="h7"}',
    "regex": 'node_cpu_seconds_total{host=~"h1.*", cpu!="c0"}',
    "sum by rate": "sum by (cpu) (rate(node_cpu_seconds_total[5m]))",
    "histogram_quantile": "histogram_quantile(0.95, sum by (le) (rate(req_duration_bucket[5m])))",
}
RANGE = {
    "sum by rate, 30m/60s": "sum by (cpu) (rate(node_cpu_seconds_total[1m]))",
    "histogram_quantile, 30m/60s": "histogram_quantile(0.95, sum by (le) (rate(req_duration_bucket[1m])))",
}


class Agent:
    """An enrolled agent of a fresh deployment, signing as the status agent does."""

    def __init__(self, base: str, agent_id: str, token: str) -> None:
        self.base, self.agent_id, self.token = base, agent_id, token

    def headers(self, body: bytes) -> dict[str, str]:
        signature = base64.b64encode(hmac.new(self.token.encode(), body, hashlib.sha256).digest()).decode()
        return {"X-Agent-Id": self.agent_id, "X-Timestamp": str(int(time.time())), "X-Request-Id": str(uuid.uuid4()),
                "X-Agent-Signature": signature, "Authorization": f"Bearer {self.token}",
                "Content-Type": "text/plain"}


def user_headers() -> dict[str, str]:
    token = mint_user_token(SECRET.encode(), user_id="bench", tenant="bench", role=Role.OPERATOR, now=time.time(),
                            ttl=86400)
    return {"Authorization": f"Bearer {token}"}


async def enroll(client: httpx.AsyncClient, base: str) -> Agent:
    created = await client.post(f"{base}/api/v1/users/bench/deployments", json={}, headers=user_headers())
    created.raise_for_status()
    deployment = created.json()
    enrolled = await client.post(f"{base}/api/v1/agent/register", json={
        "deployment_hash": deployment["deployment_hash"], "enrollment_token": deployment["enrollment_token"],
        "public_key": "-", "capabilities": [], "system_info": {}, "agent_version": "bench"})
    enrolled.raise_for_status()
    body = enrolled.json()
    return Agent(base, body["agent_id"], body["agent_token"])


def server(*flags: str) -> tuple[Any, str, str]:
    data = tempfile.mkdtemp(prefix="trioscope-bench-")
    port = servers.free_port()
    env = {**os.environ, "TRIOSCOPE_AUTH_SECRET": SECRET, "TRIOSCOPE_STORAGE_DATA_DIR": data}
    proc = servers.start([sys.executable, "-m", "trioscope", "serve", "--host", "127.0.0.1", "--port", str(port),
                          "--log-level", "warning", "--local-probe", "false", *FAST_LIMITS, *flags], env=env)
    return proc, f"http://127.0.0.1:{port}", data


def write_bodies(rounds: int) -> list[bytes]:
    """1,000-line bodies of one timestamp each."""
    now = int(time.time())
    return ["\n".join(f"bench_load,host=h{i},dc=d{i % 10} value={i * 0.5} {now + r}"
                      for i in range(1000)).encode() for r in range(rounds)]


async def throughput(send: Callable[[httpx.AsyncClient, bytes], Awaitable[httpx.Response]], body: bytes,
                     seconds: float, concurrency: int) -> float:
    """Requests per second completed by ``concurrency`` loops for ``seconds``."""
    done = 0
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                response = await send(client, body)
                assert response.status_code == 204, response.text[:300]
                done += 1

        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(loop)
        return done / (time.monotonic() - started)


async def part_write(args: argparse.Namespace) -> None:
    proc, base, data = server()
    noop_port = servers.free_port()
    noop = servers.start([sys.executable, str(Path(__file__).parent / "noop_server.py"), str(noop_port)])
    try:
        async with httpx.AsyncClient() as client:
            agent = await enroll(client, base)
        body = write_bodies(1)[0]

        async def to_trioscope(client: httpx.AsyncClient, raw: bytes) -> httpx.Response:
            return await client.post(f"{base}/api/v1/metrics/write?precision=s", content=raw,
                                     headers=agent.headers(raw))

        async def to_noop(client: httpx.AsyncClient, raw: bytes) -> httpx.Response:
            return await client.post(f"http://127.0.0.1:{noop_port}/api/v1/metrics/write", content=raw,
                                     headers=agent.headers(raw))

        await throughput(to_trioscope, body, 1, args.concurrency)  # warm-up
        await throughput(to_noop, body, 1, args.concurrency)
        ratios = []
        print(f"write: {len(body)} B bodies of 1,000 points (1,000 series), concurrency {args.concurrency}")
        for number in range(args.rounds):
            ours = await throughput(to_trioscope, body, args.seconds, args.concurrency)
            base_rate = await throughput(to_noop, body, args.seconds, args.concurrency)
            ratios.append(ours / base_rate)
            print(f"  round {number + 1}: trioscope {ours * 1000:,.0f} points/s ({ours:.1f} req/s), "
                  f"no-op POST {base_rate * 1000:,.0f} points/s ({base_rate:.1f} req/s), ratio {ours / base_rate:.2f}")
        print(f"  median ratio {statistics.median(ratios):.2f}")
    finally:
        servers.stop(noop)
        servers.stop(proc)
        shutil.rmtree(data, ignore_errors=True)


def history_bodies(now: int) -> list[bytes]:
    """30 minutes at 15 s of the 10,000 series, one body (10,000 points) per timestamp."""
    start = now - HISTORY * 15
    bodies = []
    for step in range(HISTORY):
        at = start + 15 * step
        lines = [f"node_cpu,host=h{h},cpu=c{c} seconds_total={step * (c + 1) + h % 7}i {at}"
                 for h in range(HOSTS) for c in range(CPUS)]
        for h in range(HISTOGRAM_HOSTS):
            cumulative = 0
            for index, le in enumerate(BUCKETS):
                cumulative += step * (index + 1)
                lines.append(f"req_duration,host=h{h},le={le} bucket={cumulative}i {at}")
        bodies.append("\n".join(lines).encode())
    return bodies


async def fill(base: str) -> None:
    async with httpx.AsyncClient(timeout=120) as client:
        agent = await enroll(client, base)
        for body in history_bodies(int(time.time())):
            response = await client.post(f"{base}/api/v1/metrics/write?precision=s", content=body,
                                         headers=agent.headers(body))
            assert response.status_code == 204, response.text[:300]


async def timed(client: httpx.AsyncClient, url: str, params: dict[str, str], headers: dict[str, str]) -> float:
    started = time.perf_counter()
    response = await client.get(url, params=params, headers=headers)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text[:300]
    return elapsed


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def queries(now: float) -> list[tuple[str, str, dict[str, str]]]:
    rows = [(f"instant {name}", "query", {"query": expr, "time": str(now)}) for name, expr in INSTANT.items()]
    rows += [(f"range {name}", "query_range", {"query": expr, "start": str(now - 1800), "end": str(now),
                                                "step": "60"}) for name, expr in RANGE.items()]
    return rows


async def part_query(args: argparse.Namespace) -> None:
    proc, base, data = server("--metrics-max-series-per-deployment", "20000", "--metrics-max-query-samples",
                              "100000000")
    try:
        started = time.monotonic()
        await fill(base)
        print(f"query (embedded): 10,000 series x {HISTORY} samples written in {time.monotonic() - started:.1f} s")
        now = time.time()
        headers = user_headers()
        async with httpx.AsyncClient(timeout=120) as client:
            for name, api, params in queries(now):
                spent, health = [], []
                for _ in range(args.repeat):
                    spent.append(await timed(client, f"{base}/api/v1/metrics/{api}", params, headers))
                    health.append(await timed(client, f"{base}/health", {}, {}))
                p50, p95 = percentiles(spent)
                h50, h95 = percentiles(health)
                print(f"  {name:<34} p50 {p50 * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms   "
                      f"(GET /health p50 {h50 * 1000:.1f} ms, p95 {h95 * 1000:.1f} ms; p95 ratio {p95 / h95:.0f}x)")
    finally:
        servers.stop(proc)
        shutil.rmtree(data, ignore_errors=True)


async def part_proxy(args: argparse.Namespace) -> None:
    binary = shutil.which("victoria-metrics")
    if binary is None:
        print("proxy: skipped, victoria-metrics is not installed (apt-get install victoria-metrics)")
        return
    vm_data = tempfile.mkdtemp(prefix="trioscope-bench-vm-")
    vm_port = servers.free_port()
    vm_url = f"http://127.0.0.1:{vm_port}"
    vm = subprocess.Popen([binary, f"-storageDataPath={vm_data}", f"-httpListenAddr=127.0.0.1:{vm_port}",
                           "-retentionPeriod=1", "-search.latencyOffset=0s", "-loggerLevel=ERROR"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = None
    data = ""
    try:
        async with httpx.AsyncClient() as client:
            with trio.fail_after(30):
                while True:
                    try:
                        if (await client.get(f"{vm_url}/health")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await trio.sleep(0.1)
        proc, base, data = server("--metrics-url", vm_url, "--metrics-max-series-per-deployment", "20000")
        started = time.monotonic()
        await fill(base)
        print(f"proxy: 10,000 series x {HISTORY} samples forwarded to VictoriaMetrics in "
              f"{time.monotonic() - started:.1f} s")
        now = time.time()
        headers = user_headers()
        async with httpx.AsyncClient(timeout=120) as client:
            await client.get(f"{vm_url}/internal/force_flush")
            for name, api, params in queries(now):
                ours, direct = [], []
                for _ in range(args.repeat):
                    ours.append(await timed(client, f"{base}/prometheus/api/v1/{api}", params, headers))
                    direct.append(await timed(client, f"{vm_url}/api/v1/{api}",
                                              {**params, "extra_label": "tenant=bench"}, {}))
                o50, o95 = percentiles(ours)
                d50, d95 = percentiles(direct)
                print(f"  {name:<34} via trioscope p50 {o50 * 1000:6.1f} ms p95 {o95 * 1000:6.1f} ms | "
                      f"direct p50 {d50 * 1000:6.1f} ms p95 {d95 * 1000:6.1f} ms | "
                      f"p50 +{(o50 - d50) * 1000:.1f} ms, ratio {o50 / d50:.2f}")
    finally:
        if proc is not None:
            servers.stop(proc)
        vm.terminate()
        vm.wait(timeout=30)
        shutil.rmtree(vm_data, ignore_errors=True)
        if data:
            shutil.rmtree(data, ignore_errors=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--parts", default="write,query,proxy")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if "write" in parts:
        await part_write(args)
    if "query" in parts:
        await part_query(args)
    if "proxy" in parts:
        await part_proxy(args)


if __name__ == "__main__":
    trio.run(main)
