"""What nats-py alone costs per report on the bus path, beside what one process
spends on a whole report, measured in the same run (issue 20: the floor under
the per-CPU-second target).

    .venv/bin/python bench/bus_floor.py [--hosts 1000] [--reports 6000] [--rounds 3] [--connections 32]

The design asks of nats-py, for every report and two replicas: one publish
acknowledged by JetStream (the replica that received it) and one read of the
stream by each replica (each reads every report, its own included, so that all
merge the same reports in the same order). This measures those calls and
nothing of trioscope's: the real envelopes of ``--hosts`` hosts (packed by
``trioscope.bus.pack_report`` from the load generator's reports), published
``--connections`` at a time on a subject per agent and each awaiting its
acknowledgement, as ``ReportBus.publish`` does; then read back twice, each time
by an ephemeral pull consumer of its own in batches of up to 1,024, as
``StreamReader`` does. The CPU is this process's own (nats-py on one asyncio
loop, nothing else running in it): P a publish, R a read. The nats-server is
the bench's own.

In the same round, C1: what one ``trioscope serve`` process spends on a report
(bench/replica_cost.py's one process). Printed: P + 2R, its share of C1, and the
take-in cost S the 0.8x target would then allow: two replicas spend
H + S + P + R (the receiver) and R + S (the other), one process H + S, so
(H + S) / (H + 2S + P + 2R) >= 0.8 asks S <= (0.2 (C1 - S) - 0.8 (P + 2R)) / 0.6,
i.e. S <= (0.2 C1 - 0.8 (P + 2R)) / 0.8, whatever the rest of the bus costs
(the envelope's decode, the bridge to Trio, the feed: all left at zero).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from ingest import Bus  # noqa: E402
from loadgen import PLACEHOLDER, report_template  # noqa: E402
from replica_cost import one_process  # noqa: E402

from tests.synthetic import iso  # noqa: E402
from trioscope.bus import pack_report  # noqa: E402
from trioscope.wire import decode_report  # noqa: E402

STREAM = "floor"
FETCH_BATCH = 1024


def envelopes(hosts: int) -> list[tuple[str, bytes]]:
    """(subject, envelope) of each host's report, as a replica publishes it."""
    out = []
    now = time.time()
    for index in range(hosts):
        body = report_template(index, compact=False).replace(PLACEHOLDER.encode(), iso(now).encode())
        report = decode_report(orjson.loads(body))
        data, _ = pack_report(report, now, False)
        token = base64.urlsafe_b64encode(report.agent_id.encode()).decode().rstrip("=")
        out.append((f"{STREAM}.{token}", data))
    return out


async def publish(url: str, items: list[tuple[str, bytes]], reports: int, connections: int) -> float:
    """CPU seconds of this process for ``reports`` acknowledged publishes, ``connections`` at a time."""
    import nats
    from nats.js.api import StreamConfig, StorageType

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=[f"{STREAM}.>"], storage=StorageType.FILE))
    started = time.process_time()
    sent = 0
    while sent < reports:
        batch = [items[(sent + i) % len(items)] for i in range(min(connections, reports - sent))]
        await asyncio.gather(*(js.publish(subject, data, stream=STREAM) for subject, data in batch))
        sent += len(batch)
    cpu = time.process_time() - started
    await nc.close()
    return cpu


async def read(url: str, reports: int) -> float:
    """CPU seconds of this process to read the stream's ``reports`` reports with a pull consumer of its own."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats.connect(url)
    js = nc.jetstream()
    config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, mem_storage=True)
    subscription = await js.pull_subscribe(f"{STREAM}.>", stream=STREAM, config=config)
    started = time.process_time()
    got = 0
    while got < reports:
        messages = await subscription.fetch(min(FETCH_BATCH, reports - got), timeout=5)
        got += len(messages)
        assert all(m.data for m in messages)
    cpu = time.process_time() - started
    await nc.close()
    return cpu


def floor(items: list[tuple[str, bytes]], reports: int, connections: int) -> tuple[float, float]:
    """P and R, seconds of CPU a report, on a nats-server of the round's own."""
    bus = Bus()
    try:
        p = asyncio.run(publish(bus.url, items, reports, connections)) / reports
        r = statistics.mean(asyncio.run(read(bus.url, reports)) for _ in range(2)) / reports
    finally:
        bus.close()
    return p, r


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--reports", type=int, default=6000, help="reports published and read per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="of load for C1 (bench/replica_cost.py's)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    items = envelopes(args.hosts)
    size = statistics.mean(len(data) for _, data in items)
    rows: dict[str, list[float]] = {"c1": [], "p": [], "r": [], "share": [], "s_max": []}
    for round_no in range(args.rounds):
        c1 = one_process(args, 10_000 * round_no)
        p, r = floor(items, args.reports, args.connections)
        s_max = (0.2 * c1 - 0.8 * (p + 2 * r)) / 0.8
        for key, value in zip(rows, (c1, p, r, (p + 2 * r) / c1, s_max), strict=True):
            rows[key].append(value)
        print(f"round {round_no + 1}: C1 {1000 * c1:.3f} ms | nats-py P (publish, acknowledged) {1000 * p:.3f} ms, "
              f"R (read) {1000 * r:.3f} ms, P + 2R {1000 * (p + 2 * r):.3f} ms = {(p + 2 * r) / c1:.2f} C1 | "
              f"0.8x allows a take-in S <= {1000 * s_max:.3f} ms", flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"median ({args.hosts} hosts, envelopes of {size:,.0f} B): C1 {1000 * med['c1']:.3f} ms, "
          f"P {1000 * med['p']:.3f} ms, R {1000 * med['r']:.3f} ms, P + 2R = {med['share']:.2f} C1; "
          f"the 0.8x target allows S <= {1000 * med['s_max']:.3f} ms with everything else of the bus free")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
