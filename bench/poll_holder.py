"""Client processes for bench/commands.py: trio, raw sockets, httptools.

Modes (each prints JSON on stdout):

* ``hold``: holds long-polls open, driven by lines on stdin so that the
  benchmark can pace connection opening against the server's accept rate:
  ``open K`` opens K more connections (round-robin over the agents), each
  sending one poll, and answers ``ok <connections>`` once they are connected
  and their request is sent; ``stats`` answers a JSON line of counters;
  ``close`` closes everything, prints the final counters and exits. A poll
  that is answered (204 on its timeout) is sent again on the same
  connection, so the number held stays the number opened.
* ``latency``: every agent holds one poll; commands are created one at a time
  for a random agent, timed from just before the create POST until that
  agent's poll answer arrives; the agent reports success and polls again.
* ``e2e``: K workers loop create -> poll -> report on one keep-alive
  connection each; counts completed commands per second after a warm-up.
* ``noop``: K workers send no-op GETs back to back (the e2e baseline).
* ``noop3``: the same three request shapes as ``e2e``, against no-op handlers.
* ``e2e-ws``: as ``e2e``, but each agent takes its commands and sends its
  signed reports over ``/ws/agent`` (one HTTP request per command: the create).
* ``interleave``: the same workers load several targets (``e2e``, ``noop``,
  ``noop3`` against their servers) in turn, a few seconds each, cycle after
  cycle; prints each target's rate per cycle.

The agents file (written by bench/commands.py) is
``{"user_id", "user_token", "agents": [{"agent_id", "token", "hash"}]}``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Any

import httptools
import psutil
import trio

from http_client import Closed, Http


def signature(token: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(token.encode(), body, hashlib.sha256).digest()).decode()


def agent_headers(agent: dict[str, str], body: bytes, empty_signature: str | None = None) -> list[tuple[str, str]]:
    """The TryDirect status agent's headers (tests/status_agent.py), fresh request id each time."""
    return [
        ("Authorization", f"Bearer {agent['token']}"),
        ("X-Agent-Id", agent["agent_id"]),
        ("X-Timestamp", str(int(time.time()))),
        ("X-Request-Id", str(uuid.uuid4())),
        ("X-Agent-Signature", empty_signature if empty_signature is not None and not body else signature(agent["token"], body)),
    ]


def load(path: str) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)  # type: ignore[no-any-return]


def poll_target(kind: str, agent: dict[str, str], timeout: int) -> str:
    if kind == "noop":
        return f"/wait?timeout={timeout}"
    return f"/api/v1/agent/commands/wait/{agent['hash']}?timeout={timeout}"


def outcome(status: int, body: bytes) -> str:
    """``"204"``, or ``"503 overloaded"``: an error's status with its code."""
    if status < 400:
        return str(status)
    try:
        return f"{status} {json.loads(body)['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return str(status)


def report_body(agent: dict[str, str], command_id: str) -> bytes:
    # Compact, keys sorted: as serde_json serialises the status agent's report.
    return json.dumps({"command_id": command_id, "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "deployment_hash": agent["hash"], "error": None, "status": "success"},
                      sort_keys=True, separators=(",", ":")).encode()


async def wait_idle(pid: int | None, busy_below: float = 0.05, window: float = 0.5, limit: float = 60.0) -> None:
    """Until the server process uses < ``busy_below`` of a core over ``window`` seconds."""
    if pid is None:
        await trio.sleep(2)
        return
    proc = psutil.Process(pid)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = sum(proc.cpu_times()[:2])
        await trio.sleep(window)
        if sum(proc.cpu_times()[:2]) - before < busy_below * window:
            return


# ---- hold ------------------------------------------------------------------------------------

async def hold(args: argparse.Namespace) -> None:
    data = load(args.agents)
    agents = data["agents"]
    empty = {a["agent_id"]: signature(a["token"], b"") for a in agents}
    tally: Counter[str] = Counter()
    live = 0
    opened = 0

    async def one(index: int, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal live
        agent = agents[index % len(agents)]
        try:
            with trio.fail_after(60):
                http = await Http.connect(args.host, args.port, args.source)
        except (OSError, trio.TooSlowError) as exc:
            tally[f"connect {type(exc).__name__}"] += 1
            task_status.started()
            return
        live += 1
        started = False
        try:
            while True:
                await http.send("GET", poll_target(args.kind, agent, args.timeout),
                                agent_headers(agent, b"", empty[agent["agent_id"]]))
                if not started:
                    started = True
                    task_status.started()
                status, body = await http.receive()
                tally[outcome(status, body)] += 1
                if status >= 500:
                    await trio.sleep(1)  # as an agent would, before it polls again
        except (Closed, trio.BrokenResourceError, OSError, httptools.HttpParserError) as exc:
            tally[f"closed {type(exc).__name__}"] += 1
        finally:
            live -= 1
            if not started:
                task_status.started()
            with trio.CancelScope(shield=True):
                await http.aclose()

    def stats() -> str:
        return json.dumps({"opened": opened, "live": live, "responses": dict(tally)})

    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with trio.open_nursery() as nursery:
        while True:
            while b"\n" not in buffer:
                chunk = await stdin.receive_some(4096)
                if not chunk:
                    buffer += b"close\n"
                    break
                buffer += chunk
            line, buffer = buffer.split(b"\n", 1)
            word, *rest = line.decode().split()
            if word == "open":
                count = int(rest[0])
                async with trio.open_nursery() as batch:
                    for i in range(opened, opened + count):
                        batch.start_soon(nursery.start, one, i)
                opened += count
                print(f"ok {live}", flush=True)
            elif word == "stats":
                print(stats(), flush=True)
            elif word == "close":
                nursery.cancel_scope.cancel()
                break
    print(stats(), flush=True)


# ---- latency ---------------------------------------------------------------------------------

async def latency(args: argparse.Namespace) -> None:
    data = load(args.agents)
    agents = data["agents"][: args.agents_count]
    user_auth = [("Authorization", f"Bearer {data['user_token']}")]
    tally: Counter[str] = Counter()
    got: dict[str, tuple[str, float]] = {}
    got_event: dict[str, trio.Event] = {a["agent_id"]: trio.Event() for a in agents}
    reported: dict[str, trio.Event] = {a["agent_id"]: trio.Event() for a in agents}
    polling = 0
    limiter = trio.CapacityLimiter(50)

    async def agent_loop(agent: dict[str, str]) -> None:
        nonlocal polling
        aid = agent["agent_id"]
        async with limiter:
            http = await Http.connect(args.host, args.port)
        first = True
        async with http.stream:
            while True:
                await http.send("GET", poll_target("trioscope", agent, 120), agent_headers(agent, b""))
                if first:
                    polling += 1
                    first = False
                status, body = await http.receive()
                arrived = time.perf_counter()
                tally[f"poll {outcome(status, body)}"] += 1
                if status == 200:
                    command_id = json.loads(body)["item"]["command_id"]
                    got[aid] = (command_id, arrived)
                    got_event[aid].set()
                    raw = report_body(agent, command_id)
                    status, body = await http.request("POST", "/api/v1/agent/commands/report", agent_headers(agent, raw), raw)
                    tally[f"report {outcome(status, body)}"] += 1
                    reported[aid].set()
                elif status != 204:
                    await trio.sleep(1)

    rng = random.Random(args.seed)
    latencies: list[float] = []
    acks: list[float] = []
    async with trio.open_nursery() as nursery:
        for agent in agents:
            nursery.start_soon(agent_loop, agent)
        with trio.fail_after(300):
            while polling < len(agents):
                await trio.sleep(0.1)
        await wait_idle(args.server_pid)
        user = await Http.connect(args.host, args.port)
        body = b'{"type":"restart"}'
        for _ in range(args.commands):
            agent = rng.choice(agents)
            aid = agent["agent_id"]
            got_event[aid], reported[aid] = trio.Event(), trio.Event()
            target = f"/api/v1/users/{data['user_id']}/deployments/{agent['hash']}/commands"
            sent = time.perf_counter()
            status, answer = await user.request("POST", target, user_auth, body)
            acks.append(time.perf_counter() - sent)
            tally[f"create {outcome(status, answer)}"] += 1
            if status != 202:
                continue
            command_id = json.loads(answer)["command_id"]
            with trio.move_on_after(args.lost_after):
                await got_event[aid].wait()
                received_id, arrived = got[aid]
                if received_id != command_id:
                    tally["wrong command"] += 1
                latencies.append(arrived - sent)
                await reported[aid].wait()
            if not got_event[aid].is_set():
                tally["not delivered"] += 1  # the agent's poll did not get it within lost_after
            await trio.sleep(0.01)  # let the agent's next poll reach the server
        await user.aclose()
        nursery.cancel_scope.cancel()
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    print(json.dumps({"agents": len(agents), "commands": len(latencies), "p50": statistics.median(ordered) * 1000,
                      "p95": pct(0.95), "p99": pct(0.99), "max": ordered[-1] * 1000,
                      "create_p50": statistics.median(acks) * 1000, "statuses": dict(tally)}))


# ---- e2e and its no-op baselines -------------------------------------------------------------

# One round of a worker: ``round(http, index, tally, extra)`` -> True when it completed.
Round = Callable[[Http, int, Counter[str], Any], Awaitable[bool]]


async def loop_workers(args: argparse.Namespace, one_round: Round, session: Any = None) -> None:
    """K workers, each on its own keep-alive connection, run ``one_round(http,
    index, tally, extra)`` until the deadline; ``extra`` is what ``session(index)``
    (an async context manager per worker, e.g. a WebSocket) gives, or None."""
    tally: Counter[str] = Counter()
    counted = 0
    start = trio.current_time()
    measure_from = start + args.warmup
    deadline = measure_from + args.seconds

    async def worker(index: int) -> None:
        nonlocal counted
        http = await Http.connect(args.host, args.port)
        async with http.stream, (session(index) if session is not None else nullcontext()) as extra:
            while trio.current_time() < deadline:
                done = await one_round(http, index, tally, extra)
                if done and trio.current_time() >= measure_from:
                    counted += 1

    async with trio.open_nursery() as nursery:
        for i in range(args.workers):
            nursery.start_soon(worker, args.first_index + i)
    elapsed = trio.current_time() - measure_from
    print(json.dumps({"count": counted, "elapsed": elapsed, "rate": counted / elapsed, "statuses": dict(tally)}))


def e2e_round(data: dict[str, Any]) -> Round:
    """Create a command for the worker's agent, poll it, report it done."""
    agents = data["agents"]
    user_auth = [("Authorization", f"Bearer {data['user_token']}")]
    create = b'{"type":"restart"}'

    async def one_command(http: Http, index: int, tally: Counter[str], _: None) -> bool:
        agent = agents[index % len(agents)]
        status, body = await http.request("POST", f"/api/v1/users/{data['user_id']}/deployments/{agent['hash']}/commands",
                                          user_auth, create)
        tally[f"create {outcome(status, body)}"] += 1
        if status != 202:
            return False
        status, body = await http.request("GET", poll_target("trioscope", agent, 10), agent_headers(agent, b""))
        tally[f"poll {outcome(status, body)}"] += 1
        if status != 200:
            return False
        raw = report_body(agent, json.loads(body)["item"]["command_id"])
        status, body = await http.request("POST", "/api/v1/agent/commands/report", agent_headers(agent, raw), raw)
        tally[f"report {outcome(status, body)}"] += 1
        return status == 200

    return one_command


def noop_round(_: Any) -> Round:
    """One no-op GET."""
    async def one_get(http: Http, index: int, tally: Counter[str], _: None) -> bool:
        status, _ = await http.request("GET", "/health", [])
        tally[str(status)] += 1
        return status == 200

    return one_get


def noop3_round(data: dict[str, Any]) -> Round:
    """The e2e round's three request shapes (headers, bodies) against no-op handlers."""
    agent = data["agents"][0]
    user_auth = [("Authorization", f"Bearer {data['user_token']}")]
    create = b'{"type":"restart"}'

    async def one_round(http: Http, index: int, tally: Counter[str], _: None) -> bool:
        status, _ = await http.request("POST", "/noop/create", user_auth, create)
        tally[f"create {status}"] += 1
        status, _ = await http.request("GET", "/noop/poll", agent_headers(agent, b""))
        tally[f"poll {status}"] += 1
        raw = report_body(agent, "cmd_0000000000000000")
        status, _ = await http.request("POST", "/noop/report", agent_headers(agent, raw), raw)
        tally[f"report {status}"] += 1
        return status == 200

    return one_round


ROUNDS = {"e2e": e2e_round, "noop": noop_round, "noop3": noop3_round}


async def e2e(args: argparse.Namespace) -> None:
    await loop_workers(args, e2e_round(load(args.agents)))


async def noop(args: argparse.Namespace) -> None:
    await loop_workers(args, noop_round(None))


async def noop3(args: argparse.Namespace) -> None:
    await loop_workers(args, noop3_round(load(args.agents)))


async def interleave(args: argparse.Namespace) -> None:
    """The same K workers load each target in turn for ``--slice`` seconds, over
    ``--cycles`` cycles after one warm-up cycle: every target sees the machine as
    it is within seconds of the others (these machines drift by tens of percent
    between runs a minute apart, which swamps a ratio of separate runs).

    A worker opens a fresh connection to each slice's target (no keep-alive
    connection idles past the server's timeout) and finishes the round it is in
    before it moves on, so a slice counts only rounds completed from ``--settle``
    seconds after its start to its end. Targets: ``--target MODE:PORT:PID[:AGENTS]``;
    the server's CPU is read (by PID) over each counting window.
    """
    targets = []
    for spec in args.target:
        mode, port, pid, *agents = spec.split(":", 3)
        targets.append({"mode": mode, "port": int(port), "proc": psutil.Process(int(pid)),
                        "round": ROUNDS[mode](load(agents[0]) if agents else None), "tally": Counter(),
                        "counts": [0] * args.cycles, "cpu": [0.0] * args.cycles})
    width, settle, n = args.slice, args.settle, len(targets)
    start = trio.current_time()
    end = start + (args.cycles + 1) * n * width

    def slice_at(moment: float) -> int:
        return int((moment - start) // width)

    async def worker(index: int) -> None:
        http: Http | None = None
        current = -1
        try:
            while (now := trio.current_time()) < end:
                k = slice_at(now)
                target = targets[k % n]
                if k != current or http is None:
                    if http is not None:
                        await http.aclose()
                    http, current = await Http.connect(args.host, target["port"]), k
                try:
                    done = await target["round"](http, index, target["tally"], None)
                except (Closed, trio.BrokenResourceError, OSError, httptools.HttpParserError) as exc:
                    target["tally"][f"closed {type(exc).__name__}"] += 1
                    await http.aclose()
                    http = None
                    continue
                finished = trio.current_time()
                cycle = k // n - 1
                if done and cycle >= 0 and slice_at(finished) == k and finished - start - k * width >= settle:
                    target["counts"][cycle] += 1
        finally:
            if http is not None:
                with trio.CancelScope(shield=True):
                    await http.aclose()

    databases = dict(spec.split("=", 1) for spec in args.pg_database)
    for i, target in enumerate(targets):
        target["database"] = databases.get(str(i))
        target["db_cpu"] = [0.0] * args.cycles

    async def cpu_meter() -> None:
        for k in range(n, (args.cycles + 1) * n):
            target = targets[k % n]
            await trio.sleep_until(start + k * width + settle)
            # The server's process and its children (the workers of --workers N).
            processes = [target["proc"], *target["proc"].children(recursive=True)]
            backends = postgres_backends(args.pg_url, target["database"]) if target["database"] else []
            before, db_before = process_cpu(processes), process_cpu(backends)
            await trio.sleep_until(start + (k + 1) * width)
            target["cpu"][k // n - 1] = (process_cpu(processes) - before) / (width - settle)
            target["db_cpu"][k // n - 1] = (process_cpu(backends) - db_before) / (width - settle)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cpu_meter)
        for i in range(args.workers):
            nursery.start_soon(worker, args.first_index + i)
    print(json.dumps({"slice": width, "settle": settle, "targets": [
        {"mode": t["mode"], "rates": [c / (width - settle) for c in t["counts"]], "server_cpu": t["cpu"],
         "db_cpu": t["db_cpu"], "statuses": dict(t["tally"])} for t in targets]}))


def process_cpu(processes: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``processes`` (those that have exited count 0)."""
    total = 0.0
    for proc in processes:
        try:
            total += sum(proc.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def postgres_backends(url: str, database: str) -> list[psutil.Process]:
    """The PostgreSQL server processes serving connections to ``database`` now
    (pg_stat_activity; the query's own connection is to another database)."""
    import psycopg  # only interleave with --pg-database needs it

    with psycopg.connect(url, autocommit=True) as db:
        pids = [row[0] for row in db.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))]
    return [psutil.Process(pid) for pid in pids]


async def e2e_ws(args: argparse.Namespace) -> None:
    from trio_websocket import open_websocket_url

    data = load(args.agents)
    agents = data["agents"]
    user_auth = [("Authorization", f"Bearer {data['user_token']}")]
    create = b'{"type":"restart"}'

    def agent_socket(index: int) -> Any:
        agent = agents[index]
        url = f"ws://{args.host}:{args.port}/ws/agent/{agent['hash']}?token={agent['token']}"
        return open_websocket_url(url, extra_headers=[(k.encode(), v.encode()) for k, v in agent_headers(agent, b"")])

    async def next_message(ws: Any) -> dict[str, Any]:
        """The next message but pings, which are answered (the server closes sockets that do not)."""
        while True:
            message = json.loads(await ws.get_message())
            if message["type"] != "ping":
                return message  # type: ignore[no-any-return]
            await ws.send_message('{"type":"pong"}')

    async def one_command(http: Http, index: int, tally: Counter[str], ws: Any) -> bool:
        agent = agents[index]
        status, _ = await http.request("POST", f"/api/v1/users/{data['user_id']}/deployments/{agent['hash']}/commands",
                                       user_auth, create)
        tally[f"create {status}"] += 1
        if status != 202:
            return False
        message = await next_message(ws)
        tally[f"ws {message['type']}"] += 1
        # The report acknowledges the command too (no separate "received").
        body = report_body(agent, message["item"]["command_id"])
        await ws.send_message(json.dumps({
            "type": "report", "request_id": str(uuid.uuid4()), "timestamp": int(time.time()),
            "signature": signature(agent["token"], body), "body": body.decode()}))
        ack = await next_message(ws)
        tally[f"ack {ack.get('status')}"] += 1
        return ack.get("status") == "accepted"

    await loop_workers(args, one_command, session=agent_socket)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["hold", "latency", "e2e", "noop", "noop3", "e2e-ws", "interleave"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="the server's port (every mode but interleave)")
    parser.add_argument("--agents", help="the agents file")
    parser.add_argument("--source", help="hold: local address to bind (127.0.0.2, ...)")
    parser.add_argument("--kind", choices=["trioscope", "noop"], default="trioscope", help="hold: which poll route")
    parser.add_argument("--timeout", type=int, default=120, help="hold: poll timeout (s)")
    parser.add_argument("--agents-count", type=int, default=1000, help="latency: agents holding a poll")
    parser.add_argument("--commands", type=int, default=300, help="latency: commands to time")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--lost-after", type=float, default=10.0, help="latency: seconds before a command counts as not delivered")
    parser.add_argument("--server-pid", type=int, help="latency: wait for this process to go idle before timing")
    parser.add_argument("--workers", type=int, default=64, help="e2e/noop: concurrent clients")
    parser.add_argument("--first-index", type=int, default=0,
                        help="e2e/noop/interleave: the first client's index (client i uses agent i): driver processes "
                             "sharing an agents file take distinct ranges, so that no agent holds two polls at once")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--target", action="append", default=[], help="interleave: MODE:PORT:PID[:AGENTS] (repeat)")
    parser.add_argument("--slice", type=float, default=3.0, help="interleave: seconds per target and cycle")
    parser.add_argument("--settle", type=float, default=1.0, help="interleave: seconds of each slice not counted")
    parser.add_argument("--cycles", type=int, default=8, help="interleave: counted cycles (after one warm-up cycle)")
    parser.add_argument("--pg-database", action="append", default=[],
                        help="interleave: INDEX=DBNAME, the PostgreSQL database of the INDEX-th target (0-based), "
                             "whose backends' CPU is measured beside the server's")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="interleave: where to read pg_stat_activity")
    args = parser.parse_args()
    if args.port is None and args.mode != "interleave":
        parser.error(f"{args.mode}: --port is required")
    modes = {"hold": hold, "latency": latency, "e2e": e2e, "noop": noop, "noop3": noop3, "e2e-ws": e2e_ws,
             "interleave": interleave}
    trio.run(modes[args.mode], args)


if __name__ == "__main__":
    main()
