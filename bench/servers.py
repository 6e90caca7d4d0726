"""Starting and stopping server processes for the benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``argv`` (with ``env``, else this environment) and wait for its "trioscope listening on" line."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("trioscope listening on"):
            return proc
    raise RuntimeError(f"did not start: {argv}")


def trioscope(port: int, *flags: str) -> subprocess.Popen[str]:
    return start([sys.executable, "-m", "trioscope", "serve", "--host", "127.0.0.1", "--port", str(port),
                  "--log-level", "warning", "--local-probe", "false", *flags])


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it does not exit within a minute."""
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
