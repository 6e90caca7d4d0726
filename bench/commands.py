"""The command service (issue 6) of `trioscope serve`, against no-op Quart-Trio
baselines under the same Hypercorn settings, measured in the same run.

    .venv/bin/python bench/commands.py [--polls 19800] [--agents 1000] [--commands 300]
                                       [--workers 64] [--slice 3] [--cycles 10] [--quick]

1. Memory per held long-poll: server RSS before vs while holding N polls
   (timeout 120 s) over ``--agents`` agents (N/agents polls each), opened by
   bench/poll_holder.py processes bound to 127.0.0.2, 127.0.0.3, ... and paced
   against the server's accept rate. Baseline: the same N requests held by
   bench/noop_server.py's GET /wait. Target < 40 KiB per poll. N is capped by
   the 20,000 fd limit of the server process.
2. Enqueue -> agent latency with ``--agents`` agents each holding one poll (on
   a fresh server): ``--commands`` commands one
   at a time for a random agent, from just before the create POST to that
   agent's poll answer; p50/p95/p99. Target p95 < 50 ms (seed: < 500 ms).
3. End-to-end commands/s: ``--workers`` agents loop create -> poll -> report,
   against no-op GETs (/health) and against no-op handlers of the same three
   request shapes, from the same workers. The three targets run side by side
   and are loaded in turn, ``--slice`` seconds each, for ``--cycles`` cycles
   after a warm-up cycle (bench/poll_holder.py interleave): a ratio is taken
   within each cycle, so all three see the machine as it was within seconds,
   and the median of the cycles' ratios is reported. Target >= 0.25x (three
   requests per command).
4. ``--parts e2e-ws``: as 3, with the agents on /ws/agent instead of polling
   (one HTTP request per command, the create), for comparison: alternating
   runs of ``--seconds`` on fresh servers, ``--rounds`` pairs.
5. ``--parts instructions``: the three targets of 3 under valgrind's
   callgrind, instructions per request counted over ``--seconds`` (needs
   valgrind): the same ratios without the machine's noise, for the part of a
   request's cost that runs in the process (not the kernel's).

Agent requests are signed (X-Agent-Signature) as the TryDirect status agent
signs them; ``--no-signature`` starts trioscope with ``--require-signature
false`` for comparison. Server stderr is scanned for ERROR lines and reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from http_client import Http  # noqa: E402
from poll_holder import agent_headers, wait_idle  # noqa: E402
from servers import free_port, stop  # noqa: E402

from trioscope.domain.principals import Role, mint_user_token  # noqa: E402

PYTHON = sys.executable
HOLDER = str(ROOT / "bench/poll_holder.py")
SECRET = "bench-secret-for-the-command-service-benchmark"
USER = "bench"
FD_LIMIT = 20_000
FD_MARGIN = 40
SOURCES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
PER_HOLDER = 9_000
SETTLE = 1.0  # seconds of each e2e slice not counted: the workers move over from the last target
TRIOSCOPE_FLAGS = ["--local-probe", "false", "--rate-per-address", "1000000", "--rate-per-agent", "1000000",
                   "--rate-per-user", "1000000", "--max-deployments", "100000",
                   "--registrations-per-address", "1000000",  # enrolling 1,000 agents from one address
                   "--max-connections-per-address", "100000"]  # thousands of held polls from one address


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Server:
    """A server process with its own data directory and a captured stderr."""

    def __init__(self, kind: str, signed: bool = True, wrapper: tuple[str, ...] = (),
                 pythonpath: str | None = None) -> None:
        self.kind = kind
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix="trioscope-bench-")
        self.stderr_path = Path(self.data) / "stderr.log"
        if kind == "baseline":
            argv = [PYTHON, str(ROOT / "bench/noop_server.py"), str(self.port)]
        else:
            argv = [PYTHON, "-m", "trioscope", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                    "--log-level", "warning", *TRIOSCOPE_FLAGS]
            if not signed:
                argv += ["--require-signature", "false"]
        argv = [*wrapper, *argv]
        env = {**os.environ, "TRIOSCOPE_AUTH_SECRET": SECRET, "TRIOSCOPE_STORAGE_DATA_DIR": self.data}
        if pythonpath is not None:  # another revision's code (bench/command_burst.py --base)
            env["PYTHONPATH"] = pythonpath
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._stderr, text=True, cwd=ROOT, env=env)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("trioscope listening on"):
                break
        else:
            self.close()
            raise RuntimeError(f"did not start: {argv}\n{self.stderr_path.read_text()}")
        self.ps = psutil.Process(self.proc.pid)
        self.errors: list[str] = []
        # noop_server.py prints its line before Hypercorn binds: wait until it accepts.
        deadline = time.monotonic() + (120 if wrapper else 30)
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError(f"not accepting: {argv}") from None
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self, samples: int = 3) -> int:
        values = []
        for _ in range(samples):
            values.append(self.ps.memory_info().rss)
            time.sleep(0.3)
        return int(statistics.median(values))

    def close(self) -> None:
        if self.proc.poll() is None:
            stop(self.proc)
        self._stderr.close()
        text = self.stderr_path.read_text(errors="replace")
        self.errors = [line for line in text.splitlines()
                       if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")]
        shutil.rmtree(self.data, ignore_errors=True)


ALL_ERRORS: list[str] = []


def closed(server: Server) -> None:
    server.close()
    if server.errors:
        ALL_ERRORS.extend(f"{server.kind}: {line}" for line in server.errors)


# ---- enrollment ------------------------------------------------------------------------------

async def enroll(port: int, count: int) -> dict[str, Any]:
    """``count`` deployments of user ``bench``, one enrolled agent each."""
    token = mint_user_token(SECRET.encode(), user_id=USER, tenant=USER, role=Role.OPERATOR, now=time.time(), ttl=3600)
    auth = [("Authorization", f"Bearer {token}")]
    agents: list[dict[str, str]] = []
    todo = iter(range(count))

    async def worker() -> None:
        http = await Http.connect("127.0.0.1", port)
        async with http.stream:
            for _ in todo:
                status, body = await http.request("POST", f"/api/v1/users/{USER}/deployments", auth, b"{}")
                if status != 201:
                    raise RuntimeError(f"create deployment: {status} {body[:300]!r}")
                deployment = json.loads(body)
                raw = json.dumps({"deployment_hash": deployment["deployment_hash"],
                                  "enrollment_token": deployment["enrollment_token"],
                                  "agent_version": "0.2.1", "capabilities": ["restart"]}).encode()
                status, body = await http.request("POST", "/api/v1/agent/register", [], raw)
                if status != 201:
                    raise RuntimeError(f"register: {status} {body[:300]!r}")
                agent = json.loads(body)
                agents.append({"agent_id": agent["agent_id"], "token": agent["agent_token"],
                               "hash": deployment["deployment_hash"]})

    async with trio.open_nursery() as nursery:
        for _ in range(min(16, count)):
            nursery.start_soon(worker)
    return {"user_id": USER, "user_token": token, "agents": agents}


def write_agents(directory: str, data: dict[str, Any], name: str = "agents.json") -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def fake_agents(count: int) -> dict[str, Any]:
    """For the baseline's /wait, which ignores them: same header sizes as real agents."""
    return {"user_id": USER, "user_token": "e30." + "x" * 176,  # a JWT's length
            "agents": [{"agent_id": f"agt_{i:032x}", "token": "x" * 43, "hash": f"{i:064x}"} for i in range(count)]}


# ---- 1. held polls ---------------------------------------------------------------------------

class Holder:
    """A bench/poll_holder.py hold process, fed ``open K`` lines."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.buffer = b""
        self.live = 0
        self.asked = 0

    async def line(self) -> str:
        assert self.proc.stdout is not None
        while b"\n" not in self.buffer:
            chunk = await self.proc.stdout.receive_some(65536)
            if not chunk:
                raise RuntimeError("holder exited")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    async def command(self, text: str) -> str:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(text.encode() + b"\n")
        return await self.line()


async def hold_polls(server: Server, kind: str, agents_file: str, polls: int) -> dict[str, Any]:
    """Open ``polls`` held long-polls, measure the server's RSS, release them."""
    # Warm-up: one short poll, so that first-request allocations are not counted.
    data = json.loads(Path(agents_file).read_text())
    agent = data["agents"][0]
    http = await Http.connect("127.0.0.1", server.port)
    async with http.stream:
        target = "/wait?timeout=1" if kind == "baseline" else f"/api/v1/agent/commands/wait/{agent['hash']}?timeout=1"
        status, _ = await http.request("GET", target, agent_headers(agent, b""))
        assert status == 204, status
    await trio.sleep(1.0)
    await wait_idle(server.pid)
    base_fds = server.ps.num_fds()
    polls = min(polls, FD_LIMIT - base_fds - FD_MARGIN)
    log(f"{kind}: {base_fds} fds open before the polls; holding {polls}")
    before = server.rss()
    holder_count = max(2, math.ceil(polls / PER_HOLDER))
    holders: list[Holder] = []
    started = time.monotonic()
    try:
        for i in range(holder_count):
            proc = await trio.lowlevel.open_process(
                [PYTHON, HOLDER, "hold", "--port", str(server.port), "--agents", agents_file, "--source", SOURCES[i],
                 "--kind", "noop" if kind == "baseline" else "trioscope", "--timeout", "120"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
            holders.append(Holder(proc))
        share = [polls // holder_count + (1 if i < polls % holder_count else 0) for i in range(holder_count)]
        batch, window = 50, 150
        last_progress, best = time.monotonic(), 0
        next_report = time.monotonic() + 10
        while sum(h.asked for h in holders) < polls:
            accepted = server.ps.num_fds() - base_fds
            if accepted > best:
                best, last_progress = accepted, time.monotonic()
            if time.monotonic() - last_progress > 30:
                log(f"{kind}: no progress for 30 s at {accepted} accepted; stopping there")
                break
            if sum(h.asked for h in holders) - accepted >= window:
                await trio.sleep(0.02)
                continue
            h = min((h for i, h in enumerate(holders) if h.asked < share[i]), key=lambda h: h.asked)
            count = min(batch, share[holders.index(h)] - h.asked)
            answer = await h.command(f"open {count}")
            h.asked += count
            h.live = int(answer.split()[1])
            if time.monotonic() > next_report:
                next_report += 10
                log(f"{kind}: {sum(x.asked for x in holders)} polls opened, {accepted} accepted")
        # Every connection accepted and its request handled: fds settle, CPU idles.
        with trio.move_on_after(120):
            while server.ps.num_fds() - base_fds < sum(h.asked for h in holders) - 5:
                await trio.sleep(0.2)
        await wait_idle(server.pid, busy_below=0.25, window=1.0)
        opening = time.monotonic() - started
        cpu_before = sum(server.ps.cpu_times()[:2])
        await trio.sleep(5)
        idle_cpu = (sum(server.ps.cpu_times()[:2]) - cpu_before) / 5
        stats = [json.loads(await h.command("stats")) for h in holders]
        held = sum(s["live"] for s in stats)
        during = server.rss()
        connections = server.ps.num_fds() - base_fds
        responses: dict[str, int] = {}
        for s in stats:
            for k, v in s["responses"].items():
                responses[k] = responses.get(k, 0) + v
        log(f"{kind}: holding {held} polls ({connections} server sockets), opened in {opening:.0f} s")
        for h in holders:
            assert h.proc.stdin is not None
            await h.proc.stdin.send_all(b"close\n")
            await h.line()
        with trio.move_on_after(30):
            for h in holders:
                await h.proc.wait()
    finally:
        for h in holders:
            if h.proc.returncode is None:
                h.proc.kill()
                await h.proc.wait()
    return {"polls": held, "server_sockets": connections, "before": before, "during": during,
            "kib_per_poll": (during - before) / max(held, 1) / 1024, "opening_s": opening, "responses": responses,
            "idle_cpu": idle_cpu}


def memory_line(kind: str, r: dict[str, Any]) -> str:
    early = r["responses"]
    return (f"{kind:<9} {r['polls']:>6} polls held: RSS {r['before'] / 2**20:7.1f} -> {r['during'] / 2**20:7.1f} MiB "
            f"= {r['kib_per_poll']:5.1f} KiB/poll; {100 * r['idle_cpu']:4.1f}% CPU while holding (opened and settled in "
            f"{r['opening_s']:.0f} s; answered early: {early or 'none'})")


async def probe_delivery(server: Server, data: dict[str, Any]) -> dict[str, int]:
    """After a hold: every agent polls, a command is created for it; was it handed to that poll?

    A poll whose queue ask timed out (503) must not leave a waiter behind that
    later takes a command nobody will receive."""
    await wait_idle(server.pid, busy_below=0.25, window=1.0, limit=120)
    auth = [("Authorization", f"Bearer {data['user_token']}")]
    outcome: dict[str, int] = {}
    limiter = trio.CapacityLimiter(100)

    async def one(agent: dict[str, str]) -> None:
        async with limiter:
            poll = await Http.connect("127.0.0.1", server.port)
            user = await Http.connect("127.0.0.1", server.port)
            async with poll.stream, user.stream:
                await poll.send("GET", f"/api/v1/agent/commands/wait/{agent['hash']}?timeout=8", agent_headers(agent, b""))
                await trio.sleep(1.0)
                base = f"/api/v1/users/{USER}/deployments/{agent['hash']}/commands"
                status, body = await user.request("POST", base, auth, b'{"type":"restart"}')
                if status != 202:
                    key = f"create {status}"
                else:
                    status, _ = await poll.receive()
                    if status == 200:
                        key = "delivered"
                    else:
                        command_id = json.loads(body)["command_id"]
                        _, body = await user.request("GET", f"{base}/{command_id}", auth)
                        key = f"poll {status}, command {json.loads(body)['status']}"
                outcome[key] = outcome.get(key, 0) + 1

    async with trio.open_nursery() as nursery:
        for agent in data["agents"]:
            nursery.start_soon(one, agent)
    return outcome


# ---- 3. end to end ---------------------------------------------------------------------------

def drive(mode: str, server: Server, workers: int, seconds: float, agents_file: str | None = None) -> dict[str, Any]:
    argv = [PYTHON, HOLDER, mode, "--port", str(server.port), "--workers", str(workers), "--seconds", str(seconds),
            "--warmup", "2"]
    if agents_file:
        argv += ["--agents", agents_file]
    cpu, started = sum(server.ps.cpu_times()[:2]), time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} driver failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    # Server CPU over the driver's whole run (start-up and warm-up included): is it the bottleneck?
    result["server_cpu"] = (sum(server.ps.cpu_times()[:2]) - cpu) / (time.monotonic() - started)
    return result


async def one_run(kind: str, mode: str, args: argparse.Namespace, work: str, agents_file: str | None = None
                  ) -> dict[str, Any]:
    """A fresh server of ``kind`` driven in ``mode`` (trioscope gets ``--workers``
    enrolled agents), then closed."""
    server = Server(kind, signed=not args.no_signature)
    try:
        if kind == "trioscope":
            agents_file = write_agents(work, await enroll(server.port, args.workers))
        return drive(mode, server, args.workers, args.seconds, agents_file)
    finally:
        closed(server)


async def interleaved(args: argparse.Namespace, work: str, fake: str) -> dict[str, Any]:
    """One baseline server (its no-op GET and its no-op shapes) and one trioscope
    server, loaded in turn by the same workers, ``--slice`` seconds each,
    ``--cycles`` cycles after a warm-up cycle (bench/poll_holder.py interleave)."""
    baseline, ours = Server("baseline"), Server("trioscope", signed=not args.no_signature)
    try:
        agents = write_agents(work, await enroll(ours.port, args.workers))
        argv = [PYTHON, HOLDER, "interleave", "--workers", str(args.workers), "--slice", str(args.slice),
                "--settle", str(SETTLE), "--cycles", str(args.cycles),
                "--target", f"noop:{baseline.port}:{baseline.pid}",
                "--target", f"noop3:{baseline.port}:{baseline.pid}:{fake}",
                "--target", f"e2e:{ours.port}:{ours.pid}:{agents}"]
        timeout = 3 * (args.cycles + 1) * args.slice + 120
        out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"interleave driver failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout)  # type: ignore[no-any-return]
    finally:
        closed(baseline)
        closed(ours)


async def instructions(args: argparse.Namespace, work: str, fake: str) -> dict[str, float]:
    """Instructions per request under callgrind (valgrind), where the machine's
    noise does not reach: each server runs under callgrind with instrumentation
    off, is warmed up, then counted over ``--seconds`` of ``--valgrind-workers``
    workers (connection set-up included; the kernel's share of a request is not
    counted). Far fewer concurrent requests than in part 3 (callgrind runs ~50x
    slower), so the store's group commits are smaller than under real load."""
    per_request: dict[str, float] = {}
    for kind, mode in (("baseline", "noop"), ("baseline", "noop3"), ("trioscope", "e2e")):
        out = os.path.join(tempfile.gettempdir(), f"trioscope-bench-{os.getpid()}-{mode}.callgrind")
        server = Server(kind, signed=not args.no_signature,
                        wrapper=("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"))
        try:
            agents = write_agents(work, await enroll(server.port, args.valgrind_workers)) if kind == "trioscope" else fake
            drive(mode, server, args.valgrind_workers, 3, agents)  # warm-up, not counted
            subprocess.run(["callgrind_control", "--instr=on", str(server.pid)], check=True, capture_output=True)
            result = drive(mode, server, args.valgrind_workers, args.seconds, agents)
            subprocess.run(["callgrind_control", "--instr=off", str(server.pid)], check=True, capture_output=True)
        finally:
            closed(server)
        with open(out) as f:
            totals = next(int(line.split()[1]) for line in f if line.startswith("totals:"))
        os.unlink(out)
        requests = sum(result["statuses"].values())
        per_request[mode] = totals / requests
        log(f"{mode}: {requests} requests, {totals / 1e6:.0f} M instructions")
    return per_request


def five_xx(statuses: dict[str, int]) -> int:
    return sum(v for k, v in statuses.items() if any(t.isdigit() and t.startswith("5") for t in k.split()))


async def latency(server: Server, agents_file: str, args: argparse.Namespace) -> dict[str, Any]:
    await wait_idle(server.pid, busy_below=0.25, window=1.0, limit=120)
    out = await trio.run_process(
        [PYTHON, HOLDER, "latency", "--port", str(server.port), "--agents", agents_file,
         "--agents-count", str(args.agents), "--commands", str(args.commands), "--server-pid", str(server.pid)],
        capture_stdout=True, capture_stderr=True, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"latency driver failed:\n{out.stderr.decode()[-3000:]}")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


async def main_async(args: argparse.Namespace) -> int:
    parts = set(args.parts.split(","))
    work = tempfile.mkdtemp(prefix="trioscope-bench-commands-")
    fives = 0
    summary: list[str] = []
    try:
        # 1. memory, baseline then trioscope; 2. latency on the same trioscope server.
        if "memory" in parts:
            baseline_file = write_agents(work, fake_agents(args.agents), "fake.json")
            server = Server("baseline")
            try:
                base_mem = await hold_polls(server, "baseline", baseline_file, args.polls)
            finally:
                closed(server)
            print(memory_line("baseline", base_mem), flush=True)
        if "memory" in parts:
            server = Server("trioscope", signed=not args.no_signature)
            try:
                started = time.monotonic()
                data = await enroll(server.port, args.agents)
                agents_file = write_agents(work, data)
                log(f"enrolled {args.agents} agents in {time.monotonic() - started:.1f} s")
                ours_mem = await hold_polls(server, "trioscope", agents_file, base_mem["polls"])
                print(memory_line("trioscope", ours_mem), flush=True)
                probe = await probe_delivery(server, data)
            finally:
                closed(server)
            print(f"after the hold, one command per agent for a fresh poll: {probe}", flush=True)
            lost = sum(v for k, v in probe.items() if k != "delivered")
            fives += five_xx(base_mem["responses"]) + five_xx(ours_mem["responses"])
            mem_ratio = ours_mem["kib_per_poll"] / base_mem["kib_per_poll"]
            summary.append(
                f"  memory per held poll: {ours_mem['kib_per_poll']:.1f} KiB at {ours_mem['polls']} polls "
                f"({mem_ratio:.2f}x the no-op long poll's {base_mem['kib_per_poll']:.1f} KiB); "
                f"target < 40 KiB: {'met' if ours_mem['kib_per_poll'] < 40 else 'MISSED'}")
            summary.append(f"  commands not delivered to a live poll after the hold: {lost} of {len(data['agents'])}")
        # 2. latency, on a fresh server (a held-poll run can leave dead waiters behind: see RESULTS.md).
        if "latency" in parts:
            server = Server("trioscope", signed=not args.no_signature)
            try:
                agents_file = write_agents(work, await enroll(server.port, args.agents))
                lat = await latency(server, agents_file, args)
            finally:
                closed(server)
            fives += five_xx(lat["statuses"])
            print(f"latency, {lat['agents']} agents holding a poll, {lat['commands']} commands one at a time: "
                  f"p50 {lat['p50']:.1f} ms  p95 {lat['p95']:.1f} ms  p99 {lat['p99']:.1f} ms  max "
                  f"{lat['max']:.1f} ms (create answered p50 {lat['create_p50']:.1f} ms) "
                  f"statuses {lat['statuses']}", flush=True)
            summary.append(f"  enqueue -> agent p95: {lat['p95']:.1f} ms; target < 50 ms: "
                           f"{'met' if lat['p95'] < 50 else 'MISSED'}; seed's < 500 ms: "
                           f"{'met' if lat['p95'] < 500 else 'MISSED'}")

        # 3. end to end, interleaved with its baselines.
        if "e2e" in parts:
            fake = write_agents(work, fake_agents(1), "noop-agents.json")
            result = await interleaved(args, work, fake)
            base, shaped, ours = result["targets"]
            ratios, shaped_ratios = [], []
            for cycle in range(args.cycles):
                get, triple, commands = base["rates"][cycle], shaped["rates"][cycle], ours["rates"][cycle]
                ratios.append(commands / get)
                shaped_ratios.append(commands / (3 * triple))
                print(f"e2e cycle {cycle + 1}: no-op GET {get:6.1f}/s (server CPU {100 * base['server_cpu'][cycle]:3.0f}%)  "
                      f"no-op shapes {3 * triple:6.1f} requests/s ({100 * shaped['server_cpu'][cycle]:3.0f}%)  "
                      f"trioscope {commands:6.1f} commands/s = {3 * commands:6.1f} requests/s "
                      f"({100 * ours['server_cpu'][cycle]:3.0f}%)  ratio {ratios[-1]:.3f} / {shaped_ratios[-1]:.3f}",
                      flush=True)
            print(f"statuses: trioscope {ours['statuses']}  no-op shapes {shaped['statuses']}  no-op GET {base['statuses']}")
            fives += five_xx(ours["statuses"]) + five_xx(base["statuses"]) + five_xx(shaped["statuses"])
            ratio, shaped_ratio = statistics.median(ratios), statistics.median(shaped_ratios)
            summary.append(
                f"  end to end: median {statistics.median(ours['rates']):.1f} commands/s vs "
                f"{statistics.median(base['rates']):.1f} no-op GET/s, median of the {args.cycles} cycles' ratios "
                f"{ratio:.3f}x (range {min(ratios):.3f}-{max(ratios):.3f}; {args.workers} connections, "
                f"{args.slice:g} s slices); target >= 0.25x: {'met' if ratio >= 0.25 else 'MISSED'}")
            summary.append(
                f"  end to end vs no-op requests of the same shapes (create POST, poll GET with a delivery's body, "
                f"signed report POST): median {3 * statistics.median(shaped['rates']):.1f} requests/s, median ratio "
                f"{shaped_ratio:.3f}x (range {min(shaped_ratios):.3f}-{max(shaped_ratios):.3f}); "
                f"target >= 0.25x: {'met' if shaped_ratio >= 0.25 else 'MISSED'}")

        # 5. (only when asked) instructions per request, the same three targets under callgrind.
        if "instructions" in parts:
            fake = write_agents(work, fake_agents(1), "noop-agents.json")
            counts = await instructions(args, work, fake)
            get, shape, ours = counts["noop"], counts["noop3"], counts["e2e"]
            print(f"instructions per request (callgrind, {args.valgrind_workers} workers): no-op GET {get / 1e3:.0f} k, "
                  f"no-op shapes {shape / 1e3:.0f} k, trioscope {ours / 1e3:.0f} k ({ours / shape:.2f}x the no-op shapes)",
                  flush=True)
            summary.append(f"  by instructions (in-process work only): a command (three requests) costs "
                           f"{3 * ours / get:.2f} no-op GETs: ratio {get / (3 * ours):.3f}x (three no-op shapes: "
                           f"{get / (3 * shape):.3f}x); vs no-op requests of the same shapes {shape / (3 * ours):.3f}x")

        # 4. end to end with agents on /ws/agent (for comparison; not the figure).
        if "e2e-ws" in parts:
            ratios = []
            for round_no in range(args.rounds):
                base = await one_run("baseline", "noop", args, work)
                ours = await one_run("trioscope", "e2e-ws", args, work)
                ratios.append(ours["rate"] / base["rate"])
                print(f"e2e-ws round {round_no + 1}: no-op GET {base['rate']:6.1f}/s  trioscope {ours['rate']:6.1f} "
                      f"commands/s over the agent WebSocket  ratio {ratios[-1]:.3f}  statuses {ours['statuses']}",
                      flush=True)
            summary.append(f"  end to end, agents on /ws/agent (one HTTP request per command): median ratio "
                           f"{statistics.median(ratios):.3f}x of the no-op GET over {args.rounds} rounds")

        print("summary:")
        for line in summary:
            print(line)
        print(f"  signatures: {'off (--require-signature false)' if args.no_signature else 'on'}; "
              f"5xx answers: {fives}; server ERROR log lines: {len(ALL_ERRORS)}")
        for line in ALL_ERRORS[:10]:
            print(f"    {line}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polls", type=int, default=19_900, help="held polls (capped by the server's fd limit)")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=300)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5, help="e2e-ws: baseline/trioscope pairs")
    parser.add_argument("--slice", type=float, default=3.0, help="e2e: seconds per target in each cycle")
    parser.add_argument("--cycles", type=int, default=10, help="e2e: interleaved cycles (after a warm-up cycle)")
    parser.add_argument("--valgrind-workers", type=int, default=8, help="instructions: concurrent clients")
    parser.add_argument("--no-signature", action="store_true", help="trioscope with --require-signature false")
    parser.add_argument("--parts", default="memory,latency,e2e",
                        help="which measurements (comma-separated; also e2e-ws, instructions)")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.polls, args.agents, args.commands, args.workers, args.seconds, args.rounds = 400, 50, 30, 8, 2.0, 1
        args.slice, args.cycles = 2.0, 2
    try:
        return trio.run(main_async, args)
    except BaseException:
        for line in ALL_ERRORS[:20]:
            print(f"server log: {line}", file=sys.stderr)
        raise


if __name__ == "__main__":
    raise SystemExit(main())
