"""A burst of live views while every host reports: what reconnecting browsers
meet after a restart or a network blip, on a busy server.

    .venv/bin/python bench/view_burst.py [--clients 500] [--hosts 1000] [--per-address 2] [--rounds 1]
                                         [--base REV] [--load full|none|RATE]

Loads ``--hosts`` hosts into a real ``trioscope serve`` (one process, embedded
store), then starts reports from all of them rotating over 32 connections
(bench/loadgen.py; ``--load full``: as fast as they are answered, a number: that
many a second, ``none``: no reports) and, 5 s into it, opens ``--clients``
WebSockets on the hosts view at once, ``--per-address`` from each loopback
address (127.x.y.z: the per-address limits and turns apply to each as to a
household of browsers, not to one address holding all of them), each from a
client process of four. Per client: the seconds from the burst until its first
view (the whole view) arrived; a 503 is retried after its Retry-After as a
browser would. Printed: first views within 60 s, p50/p95/max, the refusals.
With ``--base REV`` the same runs against that revision's ``src``, in turn.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from bus_ingest import base_tree, serve  # noqa: E402
from ingest import drive, merged  # noqa: E402
from servers import free_port, stop  # noqa: E402

PYTHON = sys.executable
DEADLINE = 60.0
PROCESSES = 4


async def clients(port: int, count: int, block: int, per_address: int, deadline: float) -> None:
    """``count`` clients of the hosts view from 127.<block>.y.z; their first-view times as JSON lines."""
    import trio
    from trio_websocket import ConnectionRejected, wrap_client_stream

    times: list[float] = []
    refused: dict[str, int] = {}
    failed: list[str] = []
    started = time.perf_counter()

    async def client(index: int) -> None:
        place = index // per_address
        address = f"127.{block}.{place // 250}.{1 + place % 250}"
        while time.perf_counter() < started + deadline:
            try:
                async with trio.open_nursery() as nursery:
                    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=address)
                    ws = await wrap_client_stream(nursery, stream, "127.0.0.1", "/api/v1/ws?view=hosts",
                                                  message_queue_size=2, max_message_size=1024**3)
                    await ws.get_message()
                    times.append(time.perf_counter() - started)
                    nursery.cancel_scope.cancel()
                return
            except BaseExceptionGroup as group:  # the nursery's: what the handshake raised
                error: BaseException = group
                while isinstance(error, BaseExceptionGroup):
                    error = error.exceptions[0]
            if not isinstance(error, ConnectionRejected):
                failed.append(repr(error)[:200])  # counted; the client gives up
                return
            code = json.loads(error.body or b"{}").get("error", {}).get("code", str(error.status_code))
            refused[code] = refused.get(code, 0) + 1
            await trio.sleep(float(dict(error.headers or []).get(b"retry-after", b"1")))

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(client, index)
    print(json.dumps({"times": times, "refused": refused, "failed": failed}), flush=True)


def burst(args: argparse.Namespace, pythonpath: str | None) -> dict:
    port = free_port()
    server = serve(port, ["--max-agents", str(2 * args.hosts)], pythonpath)
    load = None
    try:
        drive(port, 32, 600.0, first_agent=0, hosts=args.hosts, requests=args.hosts)
        merged(port)
        if args.load != "none":
            load = subprocess.Popen(
                [PYTHON, str(ROOT / "bench/loadgen.py"), f"http://127.0.0.1:{port}/api/v1/reports", "--connections",
                 "32", "--seconds", str(DEADLINE + 15), "--hosts", str(args.hosts),
                 *([] if args.load == "full" else ["--rate", args.load])],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            time.sleep(5)
        share = [args.clients // PROCESSES + (1 if i < args.clients % PROCESSES else 0) for i in range(PROCESSES)]
        procs = [subprocess.Popen([PYTHON, __file__, "--clients-of", str(port), str(n), str(i + 1),
                                   str(args.per_address), str(DEADLINE)], stdout=subprocess.PIPE, text=True)
                 for i, n in enumerate(share)]
        found = [json.loads(p.communicate()[0]) for p in procs]
    finally:
        if load is not None:
            load.terminate()
            load.wait()
        stop(server)
    times = sorted(t for f in found for t in f["times"])
    refused: dict[str, int] = {}
    for f in found:
        for code, n in f["refused"].items():
            refused[code] = refused.get(code, 0) + n
    return {"times": times, "refused": refused, "failed": [x for f in found for x in f["failed"]]}


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * (len(values) - 1)))] if values else float("nan")


def main() -> int:
    if sys.argv[1:2] == ["--clients-of"]:
        import trio
        port, count, block, per_address, deadline = sys.argv[2:7]
        trio.run(clients, int(port), int(count), int(block), int(per_address), float(deadline))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--per-address", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--load", default="full", help="full, none, or reports a second")
    parser.add_argument("--base", help="a git revision to measure too, in turn with this tree")
    args = parser.parse_args()
    trees = [("this tree", None)] + ([(args.base, base_tree(args.base))] if args.base else [])
    for round_no in range(args.rounds):
        for name, pythonpath in trees:
            found = burst(args, pythonpath)
            times = found["times"]
            print(f"round {round_no + 1} {name:>10}: {len(times)}/{args.clients} first views within {DEADLINE:.0f} s "
                  f"({args.clients // args.per_address} addresses, reports {args.load}); p50 {quantile(times, .5):.2f} s "
                  f"p95 {quantile(times, .95):.2f} s max {quantile(times, 1):.2f} s; refused {found['refused'] or 0}"
                  + (f"; failed {len(found['failed'])}: {found['failed'][0]}" if found["failed"] else ""), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
