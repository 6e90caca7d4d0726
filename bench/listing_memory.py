"""What reading a tenant's bulky history costs the server: the issue-16 attack
(100 commands with 9 MiB results, then one listing; 1,000 re-enrolments with
60 KiB of system info, then one GET of the deployment), against this code and,
with ``--baseline-ref``, the code of that commit, in the same run.

    .venv/bin/python bench/listing_memory.py [--commands 100] [--result-mib 9] [--enrolments 1000]
                                             [--rounds 3] [--baseline-ref COMMIT]

One server (the baseline's when given, else this code's) is filled through the
API: an agent completes ``--commands`` commands with a result of
``--result-mib`` MiB each, and the deployment is enrolled again
``--enrolments`` times with 60 KiB of system info. It is stopped, and every
server measured starts on a copy of that data directory (this code migrates
the earlier layout when it opens it: its start is timed too). For each:

1. ``GET .../commands/{id}`` of one command, and (this code) its result read
   back through ``/result`` pages: bytes, and server peak RSS meanwhile above
   its RSS just before (the peak is reset through /proc/PID/clear_refs);
2. ``GET .../commands?limit=<commands>``: response bytes, seconds (median of
   ``--rounds``), and server peak RSS during the listings above before;
3. ``GET .../deployments/{hash}`` (agents as shown by default): bytes, and
   server RSS after start (all agents loaded).

Servers run with ``--require-signature false`` and rate limits out of the way.
The machine is shared: timings are medians of rounds, RSS figures are what to
compare.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from servers import free_port, start, stop  # noqa: E402

from trioscope.domain.principals import Role, mint_user_token  # noqa: E402

SECRET = "bench-secret-for-trioscope-listing-memory-only"
USER, TENANT = "bench", "bench"
MIB = 1024 * 1024


def rss(pid: int, field: str = "VmRSS") -> int:
    """``VmRSS`` or ``VmHWM`` (peak) of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for {pid}")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


def serve(data_dir: Path, source: Path | None) -> tuple[subprocess.Popen[str], str, float]:
    """Start a server on ``data_dir`` (with the package at ``source`` when given);
    answers the process, its base URL and how long it took to start."""
    port = free_port()
    env = {**os.environ, "TRIOSCOPE_STORAGE_DATA_DIR": str(data_dir), "TRIOSCOPE_AUTH_SECRET": SECRET}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    argv = [sys.executable, "-m", "trioscope", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--local-probe", "false", "--require-signature", "false",
            "--rate-per-user", "1000000", "--rate-per-agent", "1000000", "--rate-per-address", "1000000"]
    started = time.perf_counter()
    proc = start(argv, env)
    return proc, f"http://127.0.0.1:{port}", time.perf_counter() - started


def baseline_source(ref: str, into: Path) -> Path:
    """The package ``trioscope`` as it was at ``ref``, importable from the returned directory."""
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into / "checkout", filter="data")
    (into / "path").mkdir()
    (into / "path" / "trioscope").symlink_to(into / "checkout" / "src")
    return into / "path"


def user_headers() -> dict[str, str]:
    token = mint_user_token(SECRET.encode(), user_id=USER, tenant=TENANT, role=Role.ADMIN, now=time.time(), ttl=86400)
    return {"Authorization": f"Bearer {token}"}


def fill(base: str, commands: int, result_mib: float, enrolments: int) -> tuple[str, list[str]]:
    """Through the API: a deployment whose agent completed ``commands`` large
    results, enrolled again ``enrolments`` times. Answers its hash and the command ids."""
    users = f"{base}/api/v1/users/{USER}/deployments"
    user = user_headers()
    with httpx.Client(timeout=120) as client:
        created = client.post(users, json={}, headers=user).json()
        deployment_hash = created["deployment_hash"]

        def enroll(token: str, system_info: dict[str, Any]) -> dict[str, str]:
            answer = client.post(f"{base}/api/v1/agent/register", json={
                "deployment_hash": deployment_hash, "enrollment_token": token, "system_info": system_info})
            assert answer.status_code == 201, answer.text
            body = answer.json()
            return {"Authorization": f"Bearer {body['agent_token']}", "X-Agent-Id": body["agent_id"]}

        agent = enroll(created["enrollment_token"], {"os": "linux"})
        result = {"log": "x" * int(result_mib * MIB - 64)}
        ids = []
        for _ in range(commands):
            assert client.post(f"{users}/{deployment_hash}/commands", json={"type": "logs"},
                               headers=user).status_code == 202
            polled = client.get(f"{base}/api/v1/agent/commands/wait/{deployment_hash}?timeout=5", headers=agent)
            command_id = polled.json()["item"]["command_id"]
            body = orjson.dumps({"command_id": command_id, "deployment_hash": deployment_hash, "status": "success",
                                 "result": result})
            report = client.post(f"{base}/api/v1/agent/commands/report", content=body,
                                 headers={**agent, "Content-Type": "application/json"})
            assert report.status_code == 200, report.text
            ids.append(command_id)
        system_info = {"blob": "s" * 60_000}
        for _ in range(enrolments):
            token = client.post(f"{users}/{deployment_hash}/enrollment", headers=user).json()["enrollment_token"]
            enroll(token, system_info)
    return deployment_hash, ids


def streamed(client: httpx.Client, url: str, **params: Any) -> tuple[int, float, bytes]:
    """GET ``url``: bytes received, seconds, and the first 64 KiB (the body is not kept)."""
    started = time.perf_counter()
    size, head = 0, b""
    with client.stream("GET", url, params=params) as response:
        assert response.status_code == 200, response.read()
        for chunk in response.iter_bytes():
            if len(head) < 65536:
                head += chunk[:65536]
            size += len(chunk)
    return size, time.perf_counter() - started, head


def measure(label: str, data: Path, source: Path | None, deployment_hash: str, ids: list[str],
            rounds: int) -> dict[str, float]:
    proc, base, start_seconds = serve(data, source)
    figures: dict[str, float] = {"start_s": start_seconds, "rss_after_start": rss(proc.pid)}
    url = f"{base}/api/v1/users/{USER}/deployments/{deployment_hash}"
    try:
        with httpx.Client(timeout=600, headers=user_headers()) as client:
            before = rss(proc.pid)
            reset_peak(proc.pid)
            size, seconds, head = streamed(client, f"{url}/commands/{ids[0]}")
            figures.update(command_bytes=size, command_s=seconds)
            if b'"links"' in head:  # this code: the result is read back in pages
                offset: str | None = "0"
                total = 0
                while offset is not None:
                    page = client.get(f"{url}/commands/{ids[0]}/result", params={"offset": offset})
                    total += len(page.content)
                    offset = page.headers.get("X-Next-Offset")
                figures["result_paged_bytes"] = total
            figures["command_peak"] = rss(proc.pid, "VmHWM") - before

            before = rss(proc.pid)
            reset_peak(proc.pid)
            timings = []
            for _ in range(rounds):
                size, seconds, _ = streamed(client, f"{url}/commands", limit=len(ids))
                timings.append(seconds)
            figures.update(listing_bytes=size, listing_s=statistics.median(timings),
                           listing_peak=rss(proc.pid, "VmHWM") - before)

            size, seconds, _ = streamed(client, url)
            figures.update(deployment_bytes=size, deployment_s=seconds)
    finally:
        stop(proc)
    print(f"{label}: start {figures['start_s']:.1f} s, RSS after start {figures['rss_after_start'] / MIB:.0f} MiB")
    paged = (f", result read back in pages: {figures['result_paged_bytes'] / MIB:.2f} MiB"
             if "result_paged_bytes" in figures else "")
    print(f"  one command: {figures['command_bytes'] / 1024:.1f} KiB{paged}, "
          f"server peak RSS +{figures['command_peak'] / MIB:.0f} MiB")
    print(f"  listing limit={len(ids)}: {figures['listing_bytes'] / MIB:.2f} MiB in {figures['listing_s']:.2f} s "
          f"(median of {rounds}), server peak RSS +{figures['listing_peak'] / MIB:.0f} MiB")
    print(f"  deployment GET: {figures['deployment_bytes'] / 1024:.1f} KiB in {figures['deployment_s'] * 1e3:.0f} ms")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=100)
    parser.add_argument("--result-mib", type=float, default=9.0)
    parser.add_argument("--enrolments", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-ref", help="a commit whose code to measure too, as the baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trioscope-bench-") as scratch:
        root = Path(scratch)
        baseline = baseline_source(args.baseline_ref, root / "baseline") if args.baseline_ref else None
        filled = root / "filled"
        proc, base, _ = serve(filled, baseline)
        try:
            started = time.perf_counter()
            deployment_hash, ids = fill(base, args.commands, args.result_mib, args.enrolments)
            print(f"filled by {'the baseline' if baseline else 'this code'} in {time.perf_counter() - started:.0f} s: "
                  f"{args.commands} commands with {args.result_mib:g} MiB results, "
                  f"{args.enrolments} re-enrolments with 60 KiB of system info")
        finally:
            stop(proc)
        results = {}
        for label, source in ([("baseline " + args.baseline_ref, baseline)] if baseline else []) + [("this code", None)]:
            data = root / label.replace(" ", "-")
            shutil.copytree(filled, data)
            if baseline and source is None:
                print("(this code starts on the baseline's database: its start migrates every command row)")
            results[label] = measure(label, data, source, deployment_hash, ids, args.rounds)
            if baseline and source is None:
                proc, _, seconds = serve(data, None)
                print(f"  started again (nothing left to migrate): {seconds:.1f} s, "
                      f"RSS after start {rss(proc.pid) / MIB:.0f} MiB")
                stop(proc)
            shutil.rmtree(data)
        if baseline:
            old, new = results["baseline " + args.baseline_ref], results["this code"]
            print(f"ratios this code / baseline: listing bytes {new['listing_bytes'] / old['listing_bytes']:.4f}x, "
                  f"listing peak RSS {max(new['listing_peak'], 1) / max(old['listing_peak'], 1):.4f}x, "
                  f"listing time {new['listing_s'] / old['listing_s']:.4f}x, "
                  f"deployment GET bytes {new['deployment_bytes'] / old['deployment_bytes']:.4f}x, "
                  f"RSS after start {new['rss_after_start'] / old['rss_after_start']:.2f}x")


if __name__ == "__main__":
    main()
