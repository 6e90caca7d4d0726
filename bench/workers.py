"""Many processes on one port (issue 19, item 3): ``trioscope serve --workers N``
on PostgreSQL against one process on SQLite, measured in the same run.

    .venv/bin/python bench/workers.py [--clients 64] [--slice 4] [--cycles 8]
                                      [--polls 20000] [--agents 1000] [--parts e2e,memory] [--quick]

1. End-to-end commands/s (create -> deliver -> report, bench/poll_holder.py's
   ``e2e`` round) of three servers side by side: SQLite one process, PostgreSQL
   ``--workers 1``, PostgreSQL ``--workers 2``, each with its own database. The
   same ``--clients`` client tasks load them in turn, ``--slice`` seconds each,
   ``--cycles`` cycles after a warm-up cycle (``poll_holder.py interleave``);
   ratios are taken within each cycle and their median reported. Server CPU is
   the server's process tree (parent and workers); PostgreSQL's is that of the
   backends connected to the server's database (pg_stat_activity), stated
   beside it (PostgreSQL's own background writers are not counted).
   Targets: 2 workers >= 1.4x the throughput of 1 worker; 2 workers' commands
   per server CPU-second >= 0.8x SQLite's one process.

   Routing: each client task runs its whole round (create, poll, report) on one
   keep-alive connection, which the kernel handed to one worker; so the poll is
   held by the worker that created the command, and the other worker hears of
   each change through the change feed (it runs a queue for the deployment
   too once a slice's connection for it landed there). Each client has an agent
   of its own, in every driver process (``--first-index``): an agent holds one
   poll at a time, as a real one does (two drivers sharing the agents put two
   polls of each on the two workers, which then raced to deliver: 1.51 instead
   of 1.24 PostgreSQL transactions per command).

2. Memory per held long-poll over 2 workers: ``--polls`` polls (timeout 120 s)
   over ``--agents`` agents, opened by bench/poll_holder.py hold processes
   (bench/commands.py's hold_polls, paced against the accept rate); RSS of the
   parent and both workers before vs while holding. Baseline in the same run:
   one SQLite process holding as many as its 20,000 fd limit allows. Target
   < 40 KiB per poll.

3. A projection for 1,000 commands/s and 10,000 agents, from the measured CPU
   per command (server and PostgreSQL), PostgreSQL transactions per command
   (pg_stat_database.xact_commit over the whole e2e run of the 2-worker
   server) and memory per poll.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import psutil
import psycopg
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import commands  # noqa: E402
from commands import SECRET, TRIOSCOPE_FLAGS, enroll, hold_polls, log, memory_line, write_agents  # noqa: E402
from servers import free_port, stop  # noqa: E402

PYTHON = sys.executable
HOLDER = str(ROOT / "bench/poll_holder.py")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class Tree:
    """The psutil calls bench/commands.py makes on a server, summed over a
    process and its children (the parent of ``--workers`` and its workers)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)

    def processes(self) -> list[psutil.Process]:
        return [self.root, *self.root.children(recursive=True)]

    def num_fds(self) -> int:
        return sum(p.num_fds() for p in self.processes())

    def cpu_times(self) -> tuple[float, float]:
        times = [p.cpu_times() for p in self.processes()]
        return sum(t.user for t in times), sum(t.system for t in times)

    def memory_info(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(rss=sum(p.memory_info().rss for p in self.processes()))


class Server:
    """``trioscope serve`` with ``workers`` processes on ``database`` (empty: SQLite)."""

    def __init__(self, label: str, workers: int = 1, database: str = "") -> None:
        self.kind = label
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix="trioscope-bench-workers-")
        self.stderr_path = Path(self.data) / "stderr.log"
        argv = [PYTHON, "-m", "trioscope", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "warning", *TRIOSCOPE_FLAGS,
                "--workers", str(workers)]
        if database:
            argv += ["--database", database]
        self.argv = argv
        self.env = {**os.environ, "TRIOSCOPE_AUTH_SECRET": SECRET, "TRIOSCOPE_STORAGE_DATA_DIR": self.data}
        self.errors: list[str] = []
        self._start()

    def _start(self) -> None:
        self._stderr = open(self.stderr_path, "a")
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._stderr, text=True, cwd=ROOT,
                                     env=self.env)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("trioscope listening on"):
                break
        else:
            self.close()
            raise RuntimeError(f"did not start: {self.argv}")
        self.ps = Tree(self.proc.pid)

    def restart(self) -> None:
        """Stop and start again on the same data: every worker then loads every
        agent from the database. Until cross-replica directory updates (the
        replicas branch) are merged, an agent registered through one worker is
        known to that worker only, and another answers its polls 401."""
        stop(self.proc)
        self._stderr.close()
        self._start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self, samples: int = 3) -> int:
        values = []
        for _ in range(samples):
            values.append(self.ps.memory_info().rss)
            time.sleep(0.3)
        return int(statistics.median(values))

    def worker_cpu(self) -> list[float]:
        return [sum(p.cpu_times()[:2]) for p in self.ps.root.children()]

    def close(self) -> None:
        if self.proc.poll() is None:
            stop(self.proc)
        self._stderr.close()
        text = self.stderr_path.read_text(errors="replace")
        self.errors = [line for line in text.splitlines()
                       if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")]
        if self.errors:
            log(f"{self.kind}: {len(self.errors)} ERROR lines; the log:\n" + "\n".join(text.splitlines()[-40:]))
        shutil.rmtree(self.data, ignore_errors=True)


def create_database(name: str) -> str:
    with psycopg.connect(PG_ADMIN, autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        db.execute(f"CREATE DATABASE {name}")
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def committed(name: str) -> int:
    """Transactions committed in database ``name`` so far (statistics lag up to a second)."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as db:
        row = db.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def limit_rows(name: str) -> dict[str, int]:
    """Rows inserted or updated so far in the shared limits' tables of database ``name``
    (a replay check writes one row, a rate-limit check or lease one)."""
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(url, autocommit=True) as db:
        rows = db.execute("SELECT relname, n_tup_ins + n_tup_upd FROM pg_stat_user_tables"
                          " WHERE relname IN ('replay_ids', 'rate_buckets')").fetchall()
    return {table: int(count) for table, count in rows}


async def e2e(args: argparse.Namespace, work: str, names: dict[str, str]) -> dict[str, Any]:
    servers = [Server("sqlite-1"), Server("pg-workers-1", 1, create_database(names["pg-workers-1"])),
               Server("pg-workers-2", 2, create_database(names["pg-workers-2"]))]
    try:
        files = [write_agents(work, await enroll(s.port, args.clients), f"agents-{s.kind}.json") for s in servers]
        for s in servers:  # the same for all three, though only the 2 workers need it
            s.restart()
        per_driver = args.clients // args.drivers
        argv = [PYTHON, HOLDER, "interleave", "--workers", str(per_driver), "--slice", str(args.slice),
                "--settle", "1", "--cycles", str(args.cycles), "--pg-url", PG_ADMIN,
                "--pg-database", f"1={names['pg-workers-1']}", "--pg-database", f"2={names['pg-workers-2']}"]
        for server, agents in zip(servers, files, strict=True):
            argv += ["--target", f"e2e:{server.port}:{server.pid}:{agents}"]
        result: dict[str, Any] = {}
        xact_before = committed(names["pg-workers-2"])
        rows_before = limit_rows(names["pg-workers-2"])
        split_before = servers[2].worker_cpu()
        usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        # Several driver processes, started together, each with its share of the
        # clients: one Python process driving them all would be the bottleneck.
        # Their slices line up within the start-up skew, which --settle absorbs.
        # Each driver its own clients' agents: an agent holds one poll at a time, as a real one does.
        drivers = [subprocess.Popen([*argv, "--first-index", str(d * per_driver)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, cwd=ROOT)
                   for d in range(args.drivers)]
        outputs = [d.communicate(timeout=3 * (args.cycles + 1) * args.slice + 120) for d in drivers]
        for d, (_, err) in zip(drivers, outputs, strict=True):
            if d.returncode != 0:
                raise RuntimeError(f"interleave failed:\n{err[-3000:]}")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        driver_cores = ((usage.ru_utime + usage.ru_stime) - (usage_before.ru_utime + usage_before.ru_stime)
                        ) / (time.monotonic() - started)
        split = [after - before for after, before in zip(servers[2].worker_cpu(), split_before, strict=True)]
        await trio.sleep(1.5)  # pg_stat_database is flushed about once a second
        xacts = committed(names["pg-workers-2"]) - xact_before
        rows_after = limit_rows(names["pg-workers-2"])
        result["w2_limit_rows"] = {t: rows_after.get(t, 0) - rows_before.get(t, 0) for t in rows_after}
        parts = [json.loads(out) for out, _ in outputs]
        result.update(parts[0])
        for other in parts[1:]:  # rates and statuses add up; CPU was measured by each over the same windows
            for mine, theirs in zip(result["targets"], other["targets"], strict=True):
                mine["rates"] = [a + b for a, b in zip(mine["rates"], theirs["rates"], strict=True)]
                for key, value in theirs["statuses"].items():
                    mine["statuses"][key] = mine["statuses"].get(key, 0) + value
        result["driver_cores"] = driver_cores
        result["labels"] = [s.kind for s in servers]
        result["w2_transactions"] = xacts
        result["w2_worker_cpu_split"] = split
        return result
    finally:
        for s in servers:
            s.close()
            if s.errors:
                log(f"{s.kind}: {len(s.errors)} ERROR lines, first: {s.errors[0]}")


_FIXED_WORK = """
import time
start = time.process_time()
table = {}
for i in range(12_000_000):
    table[i % 1000] = str(i)
print(time.process_time() - start)
"""


def both_cores_cost(rounds: int = 2) -> float:
    """What this machine charges in CPU time for a fixed piece of Python work
    when both cores are busy, against the same work alone (mean over
    processes and rounds). On a VM whose vCPUs share a physical core or its
    caches, 2 workers' CPU per command rises by this much whatever they do, while
    the one-process baseline mostly runs with the other core idle."""
    def run(at_once: int) -> list[float]:
        processes = [subprocess.Popen([sys.executable, "-c", _FIXED_WORK], stdout=subprocess.PIPE, text=True)
                     for _ in range(at_once)]
        return [float(p.communicate()[0]) for p in processes]

    alone = [t for _ in range(rounds) for t in run(1)]
    together = [t for _ in range(rounds) for t in run(2)]
    return statistics.mean(together) / statistics.mean(alone)


def report_e2e(r: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    sqlite, w1, w2 = r["targets"]
    cycles = range(len(w2["rates"]))

    def per_cpu(t: dict[str, Any], i: int, with_db: bool = False) -> float:
        cpu = t["server_cpu"][i] + (t["db_cpu"][i] if with_db else 0.0)
        return t["rates"][i] / cpu if cpu else 0.0

    def med(values: Any) -> float:
        return statistics.median(list(values))

    throughput = med(w2["rates"][i] / w1["rates"][i] for i in cycles if w1["rates"][i])
    vs_sqlite = med(w2["rates"][i] / sqlite["rates"][i] for i in cycles if sqlite["rates"][i])
    efficiency = med(per_cpu(w2, i) / per_cpu(sqlite, i) for i in cycles if per_cpu(sqlite, i))
    efficiency_db = med(per_cpu(w2, i, True) / per_cpu(sqlite, i) for i in cycles if per_cpu(sqlite, i))
    w1_eff = med(per_cpu(w1, i) / per_cpu(sqlite, i) for i in cycles if per_cpu(sqlite, i))
    print(f"e2e commands/s, {args.clients} clients ({args.drivers} driver processes), {args.slice:g} s slices (1 s settle), {len(cycles)} cycles; "
          "median per target [range]:")
    for label, t in zip(r["labels"], r["targets"], strict=True):
        rates, cpu, db = t["rates"], t["server_cpu"], t["db_cpu"]
        per = [per_cpu(t, i) for i in cycles]
        print(f"  {label:<13} {med(rates):6.1f}/s [{min(rates):.0f}-{max(rates):.0f}]  server CPU "
              f"{med(cpu):.2f} cores  PostgreSQL CPU {med(db):.2f} cores  "
              f"{med(per):6.1f} commands per server CPU-second  statuses {t['statuses']}")
    total_split = sum(r["w2_worker_cpu_split"]) or 1.0
    print("  2 workers' CPU split over the run: "
          + ", ".join(f"worker {i + 1} {100 * c / total_split:.0f}%" for i, c in enumerate(r["w2_worker_cpu_split"])))
    print(f"  load generator: {args.drivers} driver processes x {args.clients // args.drivers} clients, "
          f"{r['driver_cores']:.2f} cores on average over the run (the machine has {os.cpu_count()})")
    print(f"  throughput 2 workers / 1 worker: {throughput:.2f}x (target >= 1.4x: {'met' if throughput >= 1.4 else 'MISSED'})")
    print(f"  throughput 2 workers / SQLite one process: {vs_sqlite:.2f}x")
    print(f"  commands per server CPU-second, 2 workers on PostgreSQL / SQLite one process: {efficiency:.2f}x "
          f"(target >= 0.8x: {'met' if efficiency >= 0.8 else 'MISSED'}); counting PostgreSQL's backends too: "
          f"{efficiency_db:.2f}x; 1 worker on PostgreSQL: {w1_eff:.2f}x")
    if r.get("both_cores_cost"):
        cost = r["both_cores_cost"]
        print(f"  machine: a fixed piece of Python work costs {cost:.2f}x the CPU time with both cores busy (measured "
              f"before and after the run, alone vs two at once); 2 workers / SQLite per server CPU-second with that "
              f"taken out (informative; the target is judged on the figure above): {efficiency * cost:.2f}x")
    reports = sum(v for k, v in w2["statuses"].items() if k.startswith("report 200"))
    tx_per_command = r["w2_transactions"] / reports if reports else float("nan")
    print(f"  PostgreSQL transactions committed per command (2 workers, whole run incl. warm-up): "
          f"{r['w2_transactions']} / {reports} = {tx_per_command:.2f}")
    if reports:
        print("  rows written per command in the shared limits' tables (2 workers, whole run): "
              + ", ".join(f"{table} {count / reports:.2f}" for table, count in sorted(r["w2_limit_rows"].items())))
    return {
        "cpu_per_command": med(w2["server_cpu"][i] / w2["rates"][i] for i in cycles if w2["rates"][i]),
        "db_cpu_per_command": med(w2["db_cpu"][i] / w2["rates"][i] for i in cycles if w2["rates"][i]),
        "rate_w2": med(w2["rates"]), "cpu_w2": med(w2["server_cpu"]), "tx_per_command": tx_per_command,
    }


async def memory(args: argparse.Namespace, work: str, names: dict[str, str]) -> dict[str, float]:
    results: dict[str, float] = {}
    for label, workers, database in (("sqlite-1", 1, ""), ("pg-workers-2", 2, names["pg-memory"])):
        if label == "sqlite-1" and not args.memory_baseline:
            continue
        server = Server(label, workers, create_database(database) if database else "")
        # The 20,000 fd limit is per process: 2 workers hold up to twice that.
        commands.FD_LIMIT = 20_000 * workers
        try:
            data = await enroll(server.port, args.agents)
            agents_file = write_agents(work, data, f"agents-memory-{label}.json")
            server.restart()
            held = await hold_polls(server, "trioscope", agents_file, args.polls)
            print(memory_line(label, held), flush=True)
            results[label] = held["kib_per_poll"]
        finally:
            server.close()
            if server.errors:
                log(f"{label}: {len(server.errors)} ERROR lines, first: {server.errors[0]}")
    return results


def projection(e: dict[str, float], kib_per_poll: float | None) -> None:
    target, agents = 1000.0, 10_000
    server_cores = target * e["cpu_per_command"]
    db_cores = target * e["db_cpu_per_command"]
    # A worker is one process on one core; plan each at 80% of it. This machine's
    # 2 cores are shared with the load generator and other work, so the rate a
    # worker reached here says less than its CPU per command.
    per_worker = 0.8 / e["cpu_per_command"] if e["cpu_per_command"] else 0.0
    workers = math.ceil(target / per_worker) if per_worker else 0
    print(f"projection for {target:.0f} commands/s (create, deliver, report) and {agents} agents:")
    print(f"  server CPU {e['cpu_per_command'] * 1000:.1f} ms per command -> {server_cores:.1f} cores of workers; "
          f"a worker at 80% of a core does {per_worker:.0f} commands/s, so {workers} workers "
          f"(e.g. {math.ceil(workers / 4)} machine{'s' if workers > 4 else ''} of 4 cores with --workers 4)")
    print(f"  PostgreSQL backends {e['db_cpu_per_command'] * 1000:.1f} ms CPU per command -> {db_cores:.1f} cores; "
          f"{e['tx_per_command']:.2f} transactions per command -> {target * e['tx_per_command']:.0f} commits/s "
          "(group commits: one transaction carries the writes of several commands)")
    if kib_per_poll is not None:
        print(f"  {agents} held polls at {kib_per_poll:.1f} KiB each -> {agents * kib_per_poll / 2**20:.2f} GiB "
              f"over all workers; {agents} sockets need at least {math.ceil(agents / 19_900)} processes (fd limit)")


async def main_async(args: argparse.Namespace) -> int:
    parts = set(args.parts.split(","))
    work = tempfile.mkdtemp(prefix="trioscope-bench-workers-")
    tag = f"{os.getpid()}"
    names = {"pg-workers-1": f"trioscope_bench_w1_{tag}", "pg-workers-2": f"trioscope_bench_w2_{tag}",
             "pg-memory": f"trioscope_bench_mem_{tag}"}
    e2e_figures = None
    kib = None
    try:
        if "e2e" in parts:
            cost_before = both_cores_cost()
            results = await e2e(args, work, names)
            results["both_cores_cost"] = statistics.mean([cost_before, both_cores_cost()])
            e2e_figures = report_e2e(results, args)
        if "memory" in parts:
            kib = (await memory(args, work, names)).get("pg-workers-2")
        if e2e_figures is not None:
            projection(e2e_figures, kib)
    finally:
        for name in names.values():
            drop_database(name)
        shutil.rmtree(work, ignore_errors=True)
    print(f"  machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64, help="e2e: concurrent client tasks (one agent each)")
    parser.add_argument("--drivers", type=int, default=2, help="e2e: load-generator processes sharing the clients")
    parser.add_argument("--slice", type=float, default=4.0, help="e2e: seconds per target in each cycle")
    parser.add_argument("--cycles", type=int, default=8, help="e2e: counted cycles (after a warm-up cycle)")
    parser.add_argument("--polls", type=int, default=20_000, help="memory: held polls over the 2 workers")
    parser.add_argument("--agents", type=int, default=1000, help="memory: agents the polls are spread over")
    parser.add_argument("--no-memory-baseline", dest="memory_baseline", action="store_false",
                        help="memory: skip the one-process SQLite baseline")
    parser.add_argument("--parts", default="e2e,memory")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.slice, args.cycles, args.polls, args.agents = 8, 2.0, 2, 400, 50
    sys.exit(trio.run(main_async, args))


if __name__ == "__main__":
    main()
