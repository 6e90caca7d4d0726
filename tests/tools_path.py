"""What a test tool in ``tests/tools`` prints: the path of something it found,
or installed with apt-get first (Debian packages, ``tests/tools/debian-packages.sh``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent / "tools"


def tool_path(script: str) -> str:
    """Run ``tests/tools/<script>`` and return the path it prints last; the test
    is skipped where the tool cannot be installed here (exit 2, no apt-get or not
    root), and fails where installing it failed."""
    done = subprocess.run(["bash", str(TOOLS / script)], capture_output=True, text=True, timeout=900)
    if done.returncode == 2:
        pytest.skip(done.stderr.strip())
    if done.returncode != 0:
        raise RuntimeError(f"tests/tools/{script} failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]
