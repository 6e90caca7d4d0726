"""The enrollment token kept off the command line, through the real
``trioscope-probe``: a flag's value is in ``/proc/<pid>/cmdline``, which every
local user reads while the probe retries enrollment, and may enroll with first
(a reviewer's)."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.process_end import end
from tests.waiting import eventually

WARNING = "--enrollment-token on the command line can be read by every user of this host"


class _Server(http.server.ThreadingHTTPServer):
    tokens: list[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    """A stand-in for the server: enrollment answered, anything else 204."""

    server: _Server

    def do_POST(self) -> None:  # http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/api/v1/agent/register":
            self.server.tokens.append(json.loads(body)["enrollment_token"])
            self._answer(201, {"agent_id": "agent-1", "agent_token": "agent-secret"})
        else:
            self._answer(204, None)

    def do_GET(self) -> None:
        self._answer(204, None)

    def _answer(self, status: int, body: object) -> None:
        raw = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if raw:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    stub = _Server(("127.0.0.1", 0), _Handler)
    stub.tokens = []
    thread = threading.Thread(target=stub.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.shutdown()
        stub.server_close()
        thread.join(10)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRIOSCOPE_PROBE")}


async def _enrolled(server: _Server, tmp_path: Path, *token: str, env: dict[str, str] | None = None) -> str:
    """Run the probe until it saved its credentials; what it logged."""
    state, log = tmp_path / "state", tmp_path / "probe.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "trioscope_probe", "--server", f"http://127.0.0.1:{server.server_port}",
             "--deployment-hash", "dep", *token, "--state-dir", str(state), "--no-processes", "--no-connections",
             "--interval", "60"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            env={**_clean_env(), **(env or {})})
        try:
            async def saved() -> bool:
                assert process.poll() is None, log.read_text()
                return (state / "credentials.json").exists()
            await eventually(saved)
            with open(f"/proc/{process.pid}/cmdline", "rb") as cmdline:
                shown = cmdline.read()
        finally:
            end(process)
    assert b"tok-" not in shown or "--enrollment-token" in token, shown
    return log.read_text()


async def test_a_token_file_enrolls_without_the_token_on_the_command_line(server: _Server, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  tok-from-file\n")
    said = await _enrolled(server, tmp_path, "--enrollment-token-file", str(token_file))
    assert server.tokens == ["tok-from-file"] and WARNING not in said, said


async def test_the_environment_enrolls_without_a_warning(server: _Server, tmp_path: Path) -> None:
    said = await _enrolled(server, tmp_path, env={"TRIOSCOPE_PROBE_ENROLLMENT_TOKEN": "tok-from-env"})
    assert server.tokens == ["tok-from-env"] and WARNING not in said, said


async def test_a_token_given_as_a_flag_still_enrolls_and_is_warned_of(server: _Server, tmp_path: Path) -> None:
    said = await _enrolled(server, tmp_path, "--enrollment-token", "tok-from-flag")
    assert server.tokens == ["tok-from-flag"]
    assert WARNING in said and "--enrollment-token-file or the env TRIOSCOPE_PROBE_ENROLLMENT_TOKEN" in said, said


@pytest.mark.parametrize(("content", "says"), [
    (None, "cannot read {path}: No such file or directory"),
    ("", "{path} is empty"), (" \n\n", "{path} is empty"),
    ("x" * 5000, "{path} is larger than 4096 bytes"),
    ("tok-1\ntok-2\n", "{path} holds more than one word"),
    (b"\xff\xfe", "{path} is not UTF-8 text"),
])
def test_a_token_file_that_gives_no_token_is_refused_in_one_line(tmp_path: Path, content: str | bytes | None,
                                                                  says: str) -> None:
    path = tmp_path / "token"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    result = subprocess.run([sys.executable, "-m", "trioscope_probe", "--deployment-hash", "dep",
                             "--enrollment-token-file", str(path), "--once"], capture_output=True, text=True,
                            timeout=60, env=_clean_env())
    assert result.returncode == 2
    assert result.stderr.startswith(f"trioscope-probe: --enrollment-token-file: {says.format(path=path)}")
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_token_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("tok-1")
    result = subprocess.run([sys.executable, "-m", "trioscope_probe", "--deployment-hash", "dep",
                             "--enrollment-token-file", str(path), "--once"], capture_output=True, text=True,
                            timeout=60, env={**_clean_env(), "TRIOSCOPE_PROBE_ENROLLMENT_TOKEN": "tok-2"})
    assert result.returncode == 2 and result.stderr.startswith(
        "trioscope-probe: --enrollment-token-file: the enrollment token is given by --enrollment-token"), result.stderr
