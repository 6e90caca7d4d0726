"""``trioscope serve --host NAME`` as a user runs it: a real server listens
on each address of the name, and its banner says each."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests.server_process import ServerProcess
from trioscope.listening import ipv6_works

pytestmark = pytest.mark.skipif(not ipv6_works(), reason="this machine has no IPv6 loopback (no IPv6 socket "
                                                          "can be bound to ::1): localhost is 127.0.0.1 alone")


def _answers_on_both_loopbacks(server: ServerProcess) -> None:
    port = urlsplit(server.base_url).port
    banner = server.read_banner()
    assert banner[:2] == [f"trioscope listening on http://127.0.0.1:{port}", f"and listening on http://[::1]:{port}"]
    assert "Host:                  localhost  (127.0.0.1 and ::1)" in banner
    for base in (f"http://127.0.0.1:{port}", f"http://[::1]:{port}"):
        assert httpx.get(f"{base}/health", timeout=30).status_code == 200, base


def test_localhost_listens_on_127_0_0_1_and_on_ipv6_loopback() -> None:
    """Hypercorn binds a name's first IPv4 address: ``--host localhost``
    refused a client that tried ::1 first, and the banner named 127.0.0.1 alone."""
    with ServerProcess(["--host", "localhost"]) as server:  # (--port 0: each address on the port the first got)
        _answers_on_both_loopbacks(server)


def test_workers_on_localhost_each_serve_both_of_its_addresses(postgres_url: str) -> None:
    """The parent hands each worker every socket it bound (it handed exactly one)."""
    with ServerProcess(["--host", "localhost", "--workers", "2", "--database", postgres_url]) as server:
        workers = psutil.Process(server.pid).children()
        try:
            _answers_on_both_loopbacks(server)
            assert server.stop() == 0
        finally:
            for worker in workers:  # gone with the parent unless the test failed first
                try:
                    worker.kill()
                except psutil.NoSuchProcess:
                    pass
