"""Starting and stopping server processes for the benchmarks."""

from __future__ import annotations

import atexit
import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``argv`` (with ``env``, else this environment) and wait for its
    "trioscope listening on" line. One that exits first is reported with the
    last lines it wrote to stderr (a thread keeps reading them for the
    process's life: a pipe left full would block a server that logs).

    A server not given a data directory gets one of its own, removed when the
    bench ends: the default is the user's own (``~/.local/share/trioscope``),
    which the benches' commands and tokens filled, and whose schema a newer
    checkout's bench could upgrade past what the installed version reads."""
    env = dict(os.environ if env is None else env)
    if "--data-dir" not in argv and "TRIOSCOPE_STORAGE_DATA_DIR" not in env:
        data = tempfile.mkdtemp(prefix="trioscope-bench-")
        atexit.register(shutil.rmtree, data, ignore_errors=True)
        env["TRIOSCOPE_STORAGE_DATA_DIR"] = data
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    tail: collections.deque[str] = collections.deque(maxlen=20)
    threading.Thread(target=tail.extend, args=(proc.stderr,), daemon=True).start()
    for line in proc.stdout:
        if line.startswith("trioscope listening on"):
            atexit.register(stop, proc)  # a bench that fails before it stops it leaves none behind
            return proc
    proc.kill()
    proc.wait()
    raise RuntimeError(f"did not start (exit status {proc.returncode}): {argv}\n{''.join(tail)}")


def trioscope(port: int, *flags: str) -> subprocess.Popen[str]:
    return start([sys.executable, "-m", "trioscope", "serve", "--host", "127.0.0.1", "--port", str(port),
                  "--log-level", "warning", "--local-probe", "false", *flags])


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it does not exit within a minute (one that exited already: nothing)."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def allocator_env(name: str) -> dict[str, str] | None:
    """Environment of a process whose objects ``name`` allocates (pymalloc,
    malloc: glibc's, mimalloc, jemalloc) as ``trioscope serve --allocator``
    sets it; None if its library is not installed."""
    from trioscope.allocator import Allocator, find_libraries, preload_env

    allocator = Allocator(name)
    if allocator in (Allocator.PYMALLOC, Allocator.MALLOC):
        return {"PYTHONMALLOC": name}
    found = find_libraries()
    return preload_env({}, allocator, found[allocator]) if allocator in found else None
