"""Big topology listings (issue 17): ``GET /api/v1/query/topology?view=processes``
and the full topology at 100,000 processes, with ``/health`` measured during them.

    .venv/bin/python bench/listing_scale.py [--hosts 1000] [--rounds 3] [--gets 6] [--baseline-ref COMMIT]

``--hosts`` hosts (10 containers, 100 processes, 200 connections each: 1,000
hosts = 100,000 processes and ~196,000 process-to-process edges, as in
bench/topology_scale.py) are loaded over HTTP into a real `trioscope serve`
(and into the code of ``--baseline-ref`` when given). Then, in rounds, each
server answers ``--gets`` GETs of each case back to back from one httpx client,
while another process asks ``GET /health`` every 20 ms. Per case: GET p50/p95,
bytes on the wire, the server's CPU per GET, and ``/health`` p50/p95 during the
loop.

The baseline (the framework's ceiling, DESIGN.md): a no-op Quart-Trio handler
on Hypercorn with the same settings, streaming the very bytes trioscope sent
(fetched once) in 256 KiB pieces, and for the compressed cases those bytes
compressed beforehand (no compression work at request time). Cases:

* ``processes`` / ``full``: the unchanged topology (a cached version);
* ``... after report``: a report is posted before each GET, so each GET reads
  a new version (trioscope only: the baseline has no versions);
* ``... gzip`` / ``... br``: ``Accept-Encoding`` asks for it (after the
  first GET of a version, trioscope sends the compressed body it kept);
* ``processes paged``: a walk of the view with ``limit=10000`` (one "GET" is
  the whole walk); ``full summary``: ``summary=true``.

Prints one line per case and server, and the ratio of each median p95 to the
baseline's of the same bytes. Targets (issue 17): GET p95 < 500 ms and
``/health`` p95 < 50 ms during the loop. The machine has 2 shared cores: a
figure only means something next to the baseline of the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import httpx
import orjson
import psutil
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from listing_memory import baseline_source  # noqa: E402
from servers import free_port, start, stop  # noqa: E402
from topology_scale import body, load, percentile  # noqa: E402

TOPOLOGY = "/api/v1/query/topology"
PIECE = 256 * 1024
PAGE = 10_000


# ---- the no-op baseline server ----------------------------------------------------------------


def serve_baseline(port: int, directory: Path) -> None:
    """A no-op Quart-Trio app answering ``/health`` and ``/bytes/<name>``: the
    file ``<name>`` of ``directory`` streamed as it is, with the
    ``Content-Encoding`` its suffix names (``.gz``, ``.br``)."""
    import attrs
    from hypercorn.trio import serve
    from quart import Response
    from quart_trio import QuartTrio

    from trioscope.config import Settings
    from trioscope.server import hypercorn_config

    documents = {path.name: path.read_bytes() for path in directory.iterdir()}
    app = QuartTrio("noop-listing")

    @app.get("/health")
    async def health() -> Response:
        return Response(b'{"status":"healthy"}', content_type="application/json")

    @app.get("/bytes/<name>")
    async def stream(name: str) -> Response:
        document = documents[name]

        async def pieces():  # type: ignore[no-untyped-def]
            for offset in range(0, len(document), PIECE):
                yield document[offset:offset + PIECE]

        encoding = {"gz": "gzip", "br": "br"}.get(name.rpartition(".")[2])
        headers = {"Content-Encoding": encoding} if encoding else {}
        return Response(pieces(), content_type="application/json", headers=headers)

    defaults = Settings.defaults()
    settings = attrs.evolve(defaults, server=attrs.evolve(defaults.server, host="127.0.0.1", port=port))
    print(f"trioscope listening on http://127.0.0.1:{port}", flush=True)
    trio.run(serve, app, hypercorn_config(settings))


# ---- the /health prober (its own process: the GETs' client must not share its GIL) -------------


def probe_health(base: str) -> None:
    """``GET /health`` every 20 ms until stdin closes; prints the latencies (s) as JSON."""
    latencies: list[float] = []
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    with httpx.Client(base_url=base, timeout=60) as client:
        client.get("/health").raise_for_status()
        sys.stdout.write("ready\n")  # connected: the GETs may start
        sys.stdout.flush()
        while not done.is_set():
            started = time.perf_counter()
            client.get("/health").raise_for_status()
            latencies.append(time.perf_counter() - started)
            done.wait(0.02)
    sys.stdout.write(orjson.dumps(latencies).decode())


class HealthProbe:
    """Runs ``probe_health`` in another process for the duration of a ``with``."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.latencies: list[float] = []

    def __enter__(self) -> HealthProbe:
        self.proc = subprocess.Popen([sys.executable, __file__, "--probe-health", self.base],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # "ready": it has connected and had a first answer
        return self

    def __exit__(self, *exc: object) -> None:
        out, _ = self.proc.communicate(timeout=120)
        self.latencies = orjson.loads(out)


# ---- cases ------------------------------------------------------------------------------------


class Case:
    """One kind of GET: what to ask each server, and what to do before each GET."""

    def __init__(self, name: str, path: str, *, baseline: str | None, encoding: str | None = None,
                 after_report: bool = False, paged: bool = False) -> None:
        self.name, self.path, self.baseline = name, path, baseline
        self.encoding, self.after_report, self.paged = encoding, after_report, paged


def get(client: httpx.Client, path: str, encoding: str | None) -> int:
    """GET ``path`` (decoded by httpx as any client would); the bytes on the wire."""
    headers = {"Accept-Encoding": encoding or "identity"}
    response = client.get(path, headers=headers)
    response.raise_for_status()
    return response.num_bytes_downloaded


def walk(client: httpx.Client, path: str) -> int:
    """Every page of ``path`` (``limit=PAGE``); the bytes of all pages."""
    total, cursor = 0, None
    while True:
        page = f"{path}{'&' if '?' in path else '?'}limit={PAGE}" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(page, headers={"Accept-Encoding": "identity"})
        response.raise_for_status()
        total += response.num_bytes_downloaded
        page = response.json().get("page")
        cursor = page["next_cursor"] if page else None
        if cursor is None:
            return total


def measure(base: str, pid: int, path: str, case: Case, gets: int, hosts: int, reports: bool) -> dict:
    server = psutil.Process(pid)
    times, sizes = [], []
    with httpx.Client(base_url=base, timeout=120) as client, HealthProbe(base) as probe:
        cpu = server.cpu_times()
        for i in range(gets):
            if case.after_report and reports:
                client.post("/api/v1/reports", content=body(i % hosts, time.time(), hosts),
                            headers={"Content-Type": "application/json"}).raise_for_status()
            started = time.perf_counter()
            sizes.append(walk(client, path) if case.paged else get(client, path, case.encoding))
            times.append(time.perf_counter() - started)
        after = server.cpu_times()
    return {"p50": statistics.median(times), "p95": percentile(times, 0.95), "bytes": sizes[-1],
            "cpu": (after.user + after.system - cpu.user - cpu.system) / gets,
            "health_p50": statistics.median(probe.latencies), "health_p95": percentile(probe.latencies, 0.95),
            "health_max": max(probe.latencies)}


def fetch_documents(base: str, into: Path) -> None:
    """The bytes trioscope sends for the two views, and those bytes compressed, for the baseline."""
    import brotli

    with httpx.Client(base_url=base, timeout=120) as client:
        for name, path in (("processes", f"{TOPOLOGY}?view=processes"), ("full", TOPOLOGY)):
            document = client.get(path, headers={"Accept-Encoding": "identity"}).content
            (into / name).write_bytes(document)
            compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
            (into / f"{name}.gz").write_bytes(compressor.compress(document) + compressor.flush())
            (into / f"{name}.br").write_bytes(brotli.compress(document, quality=1))


def trioscope_server(port: int, data: Path, hosts: int, source: Path | None) -> subprocess.Popen[str]:
    env = {**os.environ, "TRIOSCOPE_STORAGE_DATA_DIR": str(data)}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return start([sys.executable, "-m", "trioscope", "serve", "--host", "127.0.0.1", "--port", str(port),
                  "--log-level", "warning", "--local-probe", "false", "--max-agents", str(hosts * 2)], env)


CASES = [
    Case("processes", f"{TOPOLOGY}?view=processes", baseline="processes"),
    Case("processes after report", f"{TOPOLOGY}?view=processes", baseline="processes", after_report=True),
    Case("full", TOPOLOGY, baseline="full"),
    Case("full after report", TOPOLOGY, baseline="full", after_report=True),
    Case("processes gzip", f"{TOPOLOGY}?view=processes", baseline="processes.gz", encoding="gzip"),
    Case("processes br", f"{TOPOLOGY}?view=processes", baseline="processes.br", encoding="br"),
    Case("processes br after report", f"{TOPOLOGY}?view=processes", baseline="processes.br", encoding="br",
         after_report=True),
    Case("full gzip", TOPOLOGY, baseline="full.gz", encoding="gzip"),
    Case("full br", TOPOLOGY, baseline="full.br", encoding="br"),
    Case("processes paged", f"{TOPOLOGY}?view=processes", baseline=None, paged=True),
    Case("full summary", f"{TOPOLOGY}?summary=true", baseline=None),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gets", type=int, default=6)
    parser.add_argument("--baseline-ref", help="a commit whose code to measure too")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--probe-health", help=argparse.SUPPRESS)
    parser.add_argument("--serve-baseline", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_health:
        probe_health(args.probe_health)
        return 0
    if args.serve_baseline:
        serve_baseline(int(args.serve_baseline[0]), Path(args.serve_baseline[1]))
        return 0

    cases = [c for c in CASES if args.cases is None or c.name in args.cases.split(",")]
    with tempfile.TemporaryDirectory(prefix="trioscope-bench-") as scratch:
        root = Path(scratch)
        servers: dict[str, tuple[subprocess.Popen[str], str]] = {}
        try:
            sources = [("this code", None)]
            if args.baseline_ref:
                sources.insert(0, (f"code of {args.baseline_ref}", baseline_source(args.baseline_ref, root / "old")))
            for label, source in sources:
                port = free_port()
                (root / label).mkdir()
                proc = trioscope_server(port, root / label, args.hosts, source)
                base = f"http://127.0.0.1:{port}"
                seconds = trio.run(load, base, args.hosts)
                servers[label] = (proc, base)
                print(f"{label}: loaded {args.hosts} hosts in {seconds:.1f} s, "
                      f"RSS {psutil.Process(proc.pid).memory_info().rss / 2**20:.0f} MB", flush=True)
            with httpx.Client(base_url=servers["this code"][1], timeout=120) as client:
                counts = client.get("/api/v1/query/stats").json()["topology"]
            print(f"nodes {counts['nodes_by_type']}, edges {counts['edges_by_view']}")
            documents = root / "documents"
            documents.mkdir()
            fetch_documents(servers["this code"][1], documents)
            port = free_port()
            noop = start([sys.executable, __file__, "--serve-baseline", str(port), str(documents)])
            servers["no-op"] = (noop, f"http://127.0.0.1:{port}")

            results: dict[tuple[str, str], list[dict]] = {}
            for round_ in range(args.rounds):
                for case in cases:
                    order = list(servers)
                    if round_ % 2:
                        order.reverse()  # neither side always runs first
                    for label in order:
                        proc, base = servers[label]
                        if label == "no-op":
                            if case.baseline is None:
                                continue
                            path = f"/bytes/{case.baseline}"
                        else:
                            path = case.path
                        r = measure(base, proc.pid, path, case, args.gets, args.hosts, reports=label != "no-op")
                        results.setdefault((case.name, label), []).append(r)
                print(f"round {round_ + 1} of {args.rounds} done", flush=True)
            for label, (proc, _) in servers.items():
                if label != "no-op":
                    print(f"{label}: RSS {psutil.Process(proc.pid).memory_info().rss / 2**20:.0f} MB after the GETs")
        finally:
            for proc, _ in servers.values():
                stop(proc)

    print(f"\nmedians over {args.rounds} rounds of {args.gets} GETs each "
          "(/health every 20 ms from another process during the GETs)")
    for case in cases:
        baseline = results.get((case.name, "no-op"))
        for label in servers:
            runs = results.get((case.name, label))
            if not runs:
                continue
            m = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            ratio = f"  {m['p95'] / statistics.median(r['p95'] for r in baseline):5.2f}x no-op" \
                if baseline and label != "no-op" else ""
            print(f"{case.name:<24} {label:<22} {m['bytes'] / 1e6:7.2f} MB  GET p50 {m['p50'] * 1e3:6.0f} ms"
                  f"  p95 {m['p95'] * 1e3:6.0f} ms{ratio}  CPU/GET {m['cpu'] * 1e3:5.0f} ms | /health p50 "
                  f"{m['health_p50'] * 1e3:5.1f} ms  p95 {m['health_p95'] * 1e3:6.1f} ms  max {m['health_max'] * 1e3:6.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
