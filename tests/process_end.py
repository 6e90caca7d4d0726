"""Ending a process a test started: by its process id, with a signal, then
SIGKILL if it overruns its time, so that no failure path leaves it running."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def end(process: subprocess.Popen[Any], signum: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Send ``signum`` to ``process`` if it still runs and wait for it; kill it
    if it has not ended within ``timeout`` seconds. Its exit code."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
