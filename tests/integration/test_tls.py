"""HTTPS and WSS served by the server itself, with a certificate the test
makes (trustme): real handshakes from httpx, from the probe process (its
--ca-file), from the server's own local probe, and a WebSocket over TLS."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import httpx
import orjson
import pytest
import trustme
from trio_websocket import open_websocket_url

from tests.process_end import end
from tests.server_process import ServerProcess, run_cli
from tests.waiting import eventually
from trioscope.local_probe import probe_url


@attrs.frozen
class Certificates:
    server: Path
    """The server's key and certificate chain (PEM), for --tls-cert and --tls-key."""
    ca: Path
    """The authority that signed it, for clients' --ca-file."""

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    authority = trustme.CA()
    issued = authority.issue_cert("localhost", "127.0.0.1")
    made = Certificates(server=tmp_path / "server.pem", ca=tmp_path / "ca.pem")
    issued.private_key_and_cert_chain_pem.write_to_path(str(made.server))
    authority.cert_pem.write_to_path(str(made.ca))
    return made


@pytest.fixture
def server(certificates: Certificates) -> Iterator[ServerProcess]:
    with ServerProcess(["--tls-cert", str(certificates.server), "--tls-key", str(certificates.server)]) as process:
        yield process


def test_https_with_a_real_handshake(server: ServerProcess, certificates: Certificates) -> None:
    assert server.base_url.startswith("https://127.0.0.1:")
    banner = "\n".join(server.read_banner())
    assert f"WebSocket:             {server.base_url.replace('https://', 'wss://')}/api/v1/ws" in banner
    with httpx.Client(base_url=server.base_url, verify=certificates.client_context()) as client:
        response = client.get("/health")
        assert response.status_code == 200 and response.json()["status"] == "healthy"
        assert response.http_version == "HTTP/1.1"
        # Browsers told to come back only over TLS (it was not said).
        assert response.headers["strict-transport-security"] == "max-age=31536000"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{server.base_url}/health")  # a client that does not trust the authority refuses it
    port = int(server.base_url.rpartition(":")[2])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:  # no plain HTTP beside it
        plain.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert not plain.recv(4096).startswith(b"HTTP/1.1 200")


async def test_wss(server: ServerProcess, certificates: Certificates) -> None:
    url = server.base_url.replace("https://", "wss://") + "/api/v1/ws?view=hosts"
    async with open_websocket_url(url, ssl_context=certificates.client_context()) as ws:
        first = orjson.loads(await ws.get_message())
    assert first["type"] == "topology_update" and first["payload"]["reset"] is True


async def test_the_probe_reports_over_https_with_its_ca_file(server: ServerProcess, certificates: Certificates,
                                                             tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "trioscope_probe", "--server", server.base_url, "--ca-file", str(certificates.ca),
            "--agent-id", "tls-probe", "--interval", "1s", "--no-processes", "--no-connections",
            "--state-dir", str(tmp_path / "state")]
    probe = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, verify=certificates.client_context()) as client:
            async def reported() -> bool:
                agents = (await client.get("/api/v1/agents/list")).json()["agents"]
                return any(agent["agent_id"] == "tls-probe" for agent in agents)

            assert await eventually(reported)
    finally:
        end(probe, timeout=30)
        errors = probe.stderr.read() if probe.stderr is not None else ""
    assert "CERTIFICATE_VERIFY_FAILED" not in errors


def test_the_probe_refuses_an_unreadable_ca_file(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "trioscope_probe", "--server", "https://127.0.0.1:1",
                           "--ca-file", str(tmp_path / "missing.pem")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("trioscope-probe: --ca-file: cannot use ")


def _dual_stack() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            return probe.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
    except OSError:
        return False


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::", marks=pytest.mark.skipif(
    not _dual_stack(), reason="no IPv6 here, or '::' takes no IPv4"))])
async def test_the_local_probe_trusts_its_servers_certificate(certificates: Certificates, host: str) -> None:
    """The certificate names 127.0.0.1 and localhost, as the README asks; on
    ``--host ::`` the local probe dialled ``[::1]`` and never reported."""
    with ServerProcess(["--tls-cert", str(certificates.server), "--tls-key", str(certificates.server), "--host", host],
                       env={"TRIOSCOPE_AGENTS_LOCAL_PROBE": "true"}) as process:
        port = process.base_url.rpartition(":")[2]
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=certificates.client_context()) as client:
            async def reported() -> bool:
                return bool((await client.get("/api/v1/agents/list")).json()["agents"])

            assert await eventually(reported)


def test_unusable_certificate_files_stop_the_start_with_one_line(tmp_path: Path) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate\n")
    process = ServerProcess(["--tls-cert", str(not_pem), "--tls-key", str(not_pem)])
    try:
        with pytest.raises(RuntimeError, match="server exited early"):
            process.start()
        assert process.wait() == 1
        errors = [line for line in process.stderr().splitlines() if " ERROR " in line]
        assert len(errors) == 1 and f"cannot use the TLS certificate {not_pem} and key {not_pem}: SSLError" in errors[0]
    finally:
        process.__exit__(None, None, None)  # its data directory


def test_the_trioscope_command_checks_an_https_server_with_its_ca_file(server: ServerProcess,
                                                                      certificates: Certificates) -> None:
    ready = run_cli(["health", "--ready", "--server", server.base_url], env={"TRIOSCOPE_CA_FILE": str(certificates.ca)})
    assert ready.returncode == 0 and orjson.loads(ready.stdout)["status"] == "ready"
    alive = run_cli(["health", "--server", server.base_url, "--ca-file", str(certificates.ca)])
    assert alive.returncode == 0 and orjson.loads(alive.stdout)["status"] == "healthy"
    untrusted = run_cli(["health", "--server", server.base_url])
    assert untrusted.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


@pytest.mark.parametrize(("bind", "dual_stack", "dialled"), [
    ("http://0.0.0.0:8080", None, "http://127.0.0.1:8080"),
    ("https://[::]:8443", True, "https://127.0.0.1:8443"),
    ("https://[::]:8443", False, "https://[::1]:8443"),
    ("http://[::1]:8080", True, "http://[::1]:8080"),
    ("http://10.1.2.3:8080", None, "http://10.1.2.3:8080"),
])
def test_the_local_probe_dials_ipv4_loopback_where_the_server_takes_it(bind: str, dual_stack: bool | None,
                                                                         dialled: str) -> None:
    assert probe_url(bind, dual_stack) == dialled
