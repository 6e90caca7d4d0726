"""What the operations edge (request ids, the CORS check, the access log's
middleware; issue 22) costs on the busiest route: report ingest, against the
code of a commit before it, measured in the same run.

    .venv/bin/python bench/edge_overhead.py --baseline-ref 2d317c0 [--connections 16] [--seconds 8] [--rounds 3]

Each round starts, one after another, a fresh server of the baseline code, of
this code with the defaults (access log off), and of this code with
``--access-log true`` (its lines to /dev/null), drives each from a separate
load generator (bench/loadgen.py: keep-alive connections, realistic ~20 KB
reports) and counts 202s per second. Ratios are per round, medians printed.

``--micro`` measures instead, in this process, the CPU time the middleware
adds per request around a no-op ASGI application (the same fake request
``--requests`` times; best of 5), access log off and on (JSON lines to a
null stream), against the no-op application alone: figures the machine's
noise does not swamp.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from ingest import drive  # noqa: E402
from listing_memory import baseline_source  # noqa: E402
from servers import free_port, start, stop  # noqa: E402


def measure(source: Path | None, flags: list[str], connections: int, seconds: float, round_no: int) -> float:
    port = free_port()
    env = {**os.environ, "TRIOSCOPE_STORAGE_DATA_DIR": tempfile.mkdtemp(prefix="edge-bench-")}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    proc = start([sys.executable, "-m", "trioscope", "serve", "--host", "127.0.0.1", "--port", str(port),
                  "--local-probe", "false", *flags], env)
    try:
        drive(port, connections, 2.0, first_agent=10_000 * round_no)  # warm-up
        result = drive(port, connections, seconds, first_agent=10_000 * round_no)
    finally:
        stop(proc)
    return result["statuses"].get("202", 0) / result["elapsed"]


def micro(requests: int) -> None:
    import io
    import logging

    import trio

    from trioscope.http._access_log import AccessLog
    from trioscope.http._cors import Cors, CorsPolicy
    from trioscope.http._forwarded import TrustedProxies
    from trioscope.wire.log_lines import configure_logging

    async def noop(scope: dict, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"status":"accepted"}'})

    async def sink(message: dict) -> None:
        pass

    scope = {"type": "http", "method": "POST", "path": "/api/v1/reports", "query_string": b"", "client": ("10.0.0.9", 5),
             "headers": [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"),
                         (b"content-encoding", b"gzip"), (b"content-length", b"20000"), (b"user-agent", b"probe")]}
    configure_logging("info", "json", io.StringIO())
    logging.getLogger().handlers[0].stream = open(os.devnull, "w")  # noqa: SIM115  # the JSON is built, then dropped
    apps = {"no-op app": noop,
            "+ middleware, access log off": AccessLog(Cors(noop, CorsPolicy()), enabled=False, proxies=TrustedProxies()),
            "+ middleware, access log on (JSON)": AccessLog(Cors(noop, CorsPolicy()), enabled=True,
                                                            proxies=TrustedProxies())}

    async def run(app) -> float:
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            for _ in range(requests):
                await app(dict(scope), None, sink)
            best = min(best, time.process_time() - started)
        return best / requests * 1e6

    figures = {name: trio.run(run, app) for name, app in apps.items()}
    for name, micros in figures.items():
        print(f"{name}: {micros:.1f} µs CPU per request"
              + ("" if name == "no-op app" else f" (+{micros - figures['no-op app']:.1f} µs)"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-ref")
    parser.add_argument("--micro", action="store_true")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.micro:
        micro(args.requests)
        return 0
    if not args.baseline_ref:
        parser.error("--baseline-ref is needed (or --micro)")
    with tempfile.TemporaryDirectory() as scratch:
        baseline = baseline_source(args.baseline_ref, Path(scratch))
        rates: dict[str, list[float]] = {"baseline": [], "defaults": [], "access log": []}
        for round_no in range(args.rounds):
            rates["baseline"].append(measure(baseline, ["--log-level", "warning"], args.connections, args.seconds, round_no))
            rates["defaults"].append(measure(None, ["--log-level", "warning"], args.connections, args.seconds, round_no))
            rates["access log"].append(measure(None, ["--access-log", "true"], args.connections, args.seconds, round_no))
            print(f"round {round_no + 1}: " + "  ".join(f"{name} {values[-1]:.1f}/s" for name, values in rates.items()),
                  flush=True)
    for name in ("defaults", "access log"):
        ratios = [ours / base for ours, base in zip(rates[name], rates["baseline"], strict=True)]
        print(f"{name}: median {statistics.median(rates[name]):.1f} reports/s vs baseline "
              f"{statistics.median(rates['baseline']):.1f}: ratio {statistics.median(ratios):.2f} "
              f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
