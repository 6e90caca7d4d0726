"""Where the memory of WebSocket clients that left goes: allocator accounting
of a real server, before the clients, while they are connected, after they left.

    .venv/bin/python bench/live_memory.py [--clients 2000] [--rounds 2] [--waves 1]
                                          [--allocator pymalloc|malloc|mimalloc|jemalloc] [--where]

Loads 1,000 hosts into ``trioscope serve`` (run under this file, which adds a
SIGUSR1 handler), waits until every report is merged, then connects
``--clients`` clients to the hosts view (bench/live_scale.py's client
processes), posts ``--rounds`` reports, lets the clients leave and waits 15 s
(past ``server.memory_trim_interval``), ``--waves`` times. At each step the server writes:

* RSS; Python's allocator (pymalloc): arenas of 1 MiB held, bytes in use;
  glibc: bytes in use and free (``mallinfo2``); objects the collector tracks;
* after leaving: the tracked objects per type against before (what is still
  held per client), and RSS once more after a full collection (which also
  empties the interpreter's free lists) and ``malloc_trim(0)``.

``--allocator``: pymalloc, mimalloc and jemalloc are given to the server as
its ``--allocator`` (mimalloc and jemalloc: it re-executes itself with the
library preloaded, as ``trioscope serve`` does by default); malloc runs it with
``PYTHONMALLOC=malloc`` (glibc). Under a preloaded allocator the glibc figures
only cover what glibc still serves (next to nothing).

With ``--allocator malloc`` (``PYTHONMALLOC=malloc``: every object from glibc,
whose heap grows upwards) and ``--where``, it also lists the objects still alive
after leaving that were allocated while the clients were connected (addresses
above the heap's top before they came): what keeps freed pages resident.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import gc
import json
import os
import re
import resource
import runpy
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


# ---- inside the server ----------------------------------------------------------------------

class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _serve(out: str, argv: list[str]) -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    libc.sbrk.restype = ctypes.c_void_p
    libc.sbrk.argtypes = [ctypes.c_ssize_t]
    first: dict[str, object] = {}
    top: list[int] = []

    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def pymalloc() -> dict[str, int]:
        fd, path = tempfile.mkstemp()
        saved = os.dup(2)
        os.dup2(fd, 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(fd)
        text = Path(path).read_text()
        os.unlink(path)
        found = {key: re.search(re.escape(key) + r"\s*=\s*([\d,]+)", text)
                 for key in ("# arenas allocated current", "# bytes in allocated blocks")}
        return {key: int(m.group(1).replace(",", "")) for key, m in found.items() if m}

    def allocated_since_first(objects: list[object]) -> dict[str, object]:
        low, high = top[0], int(libc.sbrk(0))
        found: dict[int, object] = {}
        for o in objects:
            if low <= id(o) < high:
                found[id(o)] = o
            for r in gc.get_referents(o):
                if not gc.is_tracked(r) and low <= id(r) < high:
                    found[id(r)] = r
        kinds: collections.Counter[str] = collections.Counter()
        size: collections.Counter[str] = collections.Counter()
        for o in found.values():
            kinds[f"{type(o).__module__}.{type(o).__qualname__}"] += 1
            size[f"{type(o).__module__}.{type(o).__qualname__}"] += sys.getsizeof(o)
        return {"objects": len(found), "bytes": sum(size.values()),
                "types": [(t, n, size[t]) for t, n in kinds.most_common(25)]}

    def dump(signum: int, frame: object) -> None:
        info = libc.mallinfo2()
        step = Path(out + ".step").read_text().strip()
        record: dict[str, object] = {
            "step": step, "rss": rss(), "glibc_used": info.uordblks, "glibc_free": info.fordblks,
            "glibc_mmapped": info.hblkhd, **pymalloc()}
        objects = gc.get_objects()
        record["tracked"] = len(objects)
        types: collections.Counter[str] = collections.Counter()
        sizes: collections.Counter[str] = collections.Counter()
        for o in objects:
            name = f"{type(o).__module__}.{type(o).__qualname__}"
            code = getattr(o, "cr_code", None) or getattr(o, "gi_code", None)
            if code is not None:  # a suspended task's frames, by function
                name = f"{name} {code.co_qualname}"
            types[name] += 1
            sizes[name] += sys.getsizeof(o)
        if not first:
            first.update(types=types, sizes=sizes)
            top.append(int(libc.sbrk(0)))
        else:
            before = first["types"]
            assert isinstance(before, collections.Counter)
            record["type_deltas"] = [(t, types[t] - before[t]) for t in types | before
                                     if abs(types[t] - before[t]) >= 50]
            sizes_before = first["sizes"]
            assert isinstance(sizes_before, collections.Counter)
            record["size_deltas"] = [(t, types[t] - before[t], sizes[t] - sizes_before[t]) for t in types | before
                                     if abs(types[t] - before[t]) >= 50]
        if step == "left" and os.environ.get("LIVE_MEMORY_WHERE"):
            record["allocated_while_connected"] = allocated_since_first(objects)
        del objects
        if step == "left":
            gc.collect()
            libc.malloc_trim(0)
            record["rss_after_collect_and_trim"] = rss()
        with open(out, "a") as file:
            file.write(json.dumps(record) + "\n")

    signal.signal(signal.SIGUSR1, dump)
    sys.argv = ["trioscope", *argv]
    runpy.run_module("trioscope", run_name="__main__", alter_sys=True)


# ---- the driver -----------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--waves", type=int, default=1, help="clients come and leave this many times")
    parser.add_argument("--allocator", choices=("pymalloc", "malloc", "mimalloc", "jemalloc"), default="pymalloc")
    parser.add_argument("--where", action="store_true", help="with --allocator malloc: what pins the freed pages")
    parser.add_argument("--serve", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        _serve(os.environ["LIVE_MEMORY_OUT"], args.serve)
        return 0

    import httpx
    import trio

    sys.path.insert(0, str(ROOT))
    from live_scale import HOSTS, Workers, settle
    from servers import free_port, start, stop
    from topology_scale import body, load

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out = tempfile.mkdtemp(prefix="live-memory-") + "/steps.jsonl"
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONMALLOC", "LD_PRELOAD", "MALLOC_CONF")}
    env.update({"LIVE_MEMORY_OUT": out, **({"LIVE_MEMORY_WHERE": "1"} if args.where else {})})
    if args.allocator == "malloc":
        env["PYTHONMALLOC"] = "malloc"  # and server.allocator auto leaves it as it is
    proc = start([sys.executable, __file__, "--serve", "serve", "--host", "127.0.0.1", "--port", str(port),
                  "--log-level", "warning", "--local-probe", "false", "--ws-max-clients", "100000",
                  "--ws-max-clients-per-address", "100000", "--max-connections-per-address", "100000", "--ws-max-waiting-clients-per-address", "100000", "--rate-per-address", "1000000",
                  "--allocator", "auto" if args.allocator == "malloc" else args.allocator], env=env)

    def step(name: str) -> dict:
        Path(out + ".step").write_text(name)
        done = len(Path(out).read_text().splitlines()) if Path(out).exists() else 0
        os.kill(proc.pid, signal.SIGUSR1)
        while (len(Path(out).read_text().splitlines()) if Path(out).exists() else 0) <= done:
            time.sleep(0.2)
        record = json.loads(Path(out).read_text().splitlines()[-1])
        print(f"{name:<10} RSS {record['rss'] / 2**20:6.0f} MiB | pymalloc arenas "
              f"{record.get('# arenas allocated current', '-')}, in use "
              f"{record.get('# bytes in allocated blocks', 0) / 2**20:.0f} MiB | glibc in use "
              f"{record['glibc_used'] / 2**20:.0f} MiB, free {record['glibc_free'] / 2**20:.0f} MiB | "
              f"tracked objects {record['tracked']}", flush=True)
        return record

    try:
        base = f"http://127.0.0.1:{port}"
        http = httpx.Client(base_url=base, timeout=120)
        trio.run(load, base, HOSTS)
        settle(http)
        before = step("before")
        for wave in range(1, args.waves + 1):
            workers = Workers(f"ws://127.0.0.1:{port}/api/v1/ws?view=hosts", args.clients, args.processes,
                              "version", deadline=180)
            started = time.perf_counter()
            connected = 0
            while time.perf_counter() - started < 180:
                connected = sum(s["connected"] for s in workers.ask({"do": "status"}))
                if connected >= args.clients:
                    break
                time.sleep(0.1)
            print(f"wave {wave}: {connected} of {args.clients} clients connected in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            time.sleep(3)
            held = step("connected" if wave == 1 else f"connected{wave}")
            if wave == 1:
                print(f"held per connected client (tracked objects by type, their own sizes; "
                      f"{(held['tracked'] - before['tracked']) / connected:.0f} objects):")
                for name, count, size in sorted(held["size_deltas"], key=lambda x: -x[2])[:int(os.environ.get("LIVE_MEMORY_ROWS", "20"))]:
                    print(f"  {count / connected:7.1f} x {name:<60} {size / connected / 1024:6.2f} KiB")
            for r in range(1, args.rounds + 1):
                http.post("/api/v1/reports", content=body(r % HOSTS, time.time(), HOSTS),
                          headers={"Content-Type": "application/json"}).raise_for_status()
                time.sleep(2)
            workers.leave()
            time.sleep(15)
            if wave < args.waves:
                step(f"left{wave}")
        left = step("left")
        print(f"after leaving: RSS {left['rss'] / before['rss']:.2f}x before; "
              f"after a full collection and malloc_trim(0): {left['rss_after_collect_and_trim'] / before['rss']:.2f}x")
        print("tracked objects per type, after leaving - before (|delta| >= 50):",
              sorted(left["type_deltas"], key=lambda x: -abs(x[1]))[:15])
        if "allocated_while_connected" in left:
            print("still alive, allocated while the clients were connected:",
                  json.dumps(left["allocated_while_connected"], indent=1))
        http.close()
    finally:
        stop(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
