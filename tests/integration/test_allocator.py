"""``trioscope serve --allocator``: the server re-executes itself once with the
allocator preloaded, and says which one runs (log, ``/api/v1/runtime``)."""

from __future__ import annotations

import httpx
import psutil

from tests.server_process import ServerProcess
from trioscope.allocator import MARKER


def started(allocator: str) -> ServerProcess:
    server = ServerProcess(["--allocator", allocator])
    for inherited in ("PYTHONMALLOC", "LD_PRELOAD", "MALLOC_CONF", MARKER):
        server.env.pop(inherited, None)  # as started by hand, not by a server that chose already
    return server


def runtime_allocator(server: ServerProcess) -> dict[str, object]:
    admin = {"Authorization": f"Bearer {server.user_token(role='ADMIN')}"}
    runtime = httpx.get(f"{server.base_url}/api/v1/runtime", headers=admin)
    assert runtime.status_code == 200
    found: dict[str, object] = runtime.json()["allocator"]
    return found


def mapped(pid: int) -> set[str]:
    return {region.path for region in psutil.Process(pid).memory_maps()}


def test_auto_runs_on_jemalloc_where_it_is_installed(jemalloc: str) -> None:
    with started("auto") as server:
        found = runtime_allocator(server)
        assert found == {"name": "jemalloc", "library": jemalloc, "requested": "auto"}
        # The same process (re-executed in place: the pid its starter waits on),
        # with the library really loaded and Python's objects taken from it.
        assert jemalloc in mapped(server.pid)
        environ = psutil.Process(server.pid).environ()
        assert environ["PYTHONMALLOC"] == "malloc" and environ[MARKER] == "jemalloc"
        banner = "\n".join(server.read_banner())
        assert server.stop() == 0
        assert f"Allocator:             jemalloc from {jemalloc} (preloaded: server.allocator auto)" in banner


def test_serve_stays_on_pymalloc_when_asked(jemalloc: str) -> None:
    with started("pymalloc") as server:
        assert runtime_allocator(server) == {"name": "pymalloc", "library": None, "requested": "pymalloc"}
        assert jemalloc not in mapped(server.pid)
        banner = "\n".join(server.read_banner())
        assert server.stop() == 0
        assert "Allocator:             pymalloc (pymalloc asked, already running)" in banner


_PURGE = """
import json, sys
from trioscope.allocator import Jemalloc, resident_bytes
blocks = [bytearray(64 * 1024) for _ in range(1024)]  # 64 MiB, touched
del blocks  # freed: dirty pages jemalloc keeps (its decay is off here)
jemalloc = Jemalloc.load()
before = jemalloc.dirty_bytes()
kept = jemalloc.trim(min_free=2**40)
done = jemalloc.trim(min_free=16 * 2**20)
print(json.dumps({"dirty": before, "kept": kept is None, "returned": done.returned, "after": done.free_after}))
"""


def test_the_trim_task_purges_what_jemalloc_holds_dirty(jemalloc: str) -> None:
    """Under jemalloc the server's trim task asks it to purge its freed pages
    rather than waiting for its decay (RSS after 5,000 clients left: 1.12x at
    15 s with the decay alone)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "LD_PRELOAD": jemalloc, "PYTHONMALLOC": "malloc",
           "MALLOC_CONF": "narenas:1,dirty_decay_ms:-1,muzzy_decay_ms:0"}
    out = subprocess.run([sys.executable, "-c", _PURGE], env=env, capture_output=True, text=True, check=True)
    found = json.loads(out.stdout)
    assert found["dirty"] >= 48 * 2**20
    assert found["kept"]  # below min_free: nothing done
    assert found["returned"] >= 48 * 2**20
    assert found["after"] < 16 * 2**20
