"""A command's report answered 200 by something between the probe and a real
trioscope server (a proxy, a captive portal) with a page of its own: the
report did not arrive, and the probe keeps it and sends it again until the
server's own answer says it took it (``_refusals.report_taken``). Taken as
delivered, it was forgotten, and its command timed out although it had run."""

from __future__ import annotations

import http.server
import logging
import threading
from pathlib import Path
from types import TracebackType

import httpx
import pytest
import trio

from tests.integration.test_commands import Operator
from tests.server_process import ServerProcess
from tests.waiting import eventually
from trioscope_probe import _answers as answers
from trioscope_probe._agent import CommandAgent, enroll
from trioscope_probe._pending import PendingReports

DEADLINE = 60.0
REPORT_PATH = "/api/v1/agent/commands/report"
PORTAL_PAGE = b"<html><head><title>Hotel Wi-Fi</title></head><body>Sign in to continue</body></html>"
HOP_BY_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class PortalProxy:
    """A plain HTTP proxy in front of ``upstream`` (its own thread) that
    answers the first command report itself, 200 with ``PORTAL_PAGE``, and
    passes every other request on."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.portal_answers = 0
        self.reports_passed = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                proxy.forward(self)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                proxy.forward(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def forward(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if handler.command == "POST" and handler.path == REPORT_PATH:
            with self.lock:
                portal = self.portal_answers == 0
                self.portal_answers += portal
                self.reports_passed += not portal
            if portal:
                handler.send_response(200)
                handler.send_header("Content-Type", "text/html; charset=utf-8")
                handler.send_header("Content-Length", str(len(PORTAL_PAGE)))
                handler.end_headers()
                handler.wfile.write(PORTAL_PAGE)
                return
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        with httpx.Client(base_url=self.upstream, timeout=90) as client:
            answer = client.request(handler.command, handler.path, headers=headers, content=body)
        handler.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() not in HOP_BY_HOP:
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(answer.content)))
        handler.end_headers()
        handler.wfile.write(answer.content)

    def __enter__(self) -> PortalProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_a_final_report_answered_200_by_a_portals_page_is_kept_and_sent_again_until_trioscope_takes_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    with ServerProcess() as server, PortalProxy(server.base_url) as proxy:
        operator = Operator(server, "ops", "acme")
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            deployment = await operator.create_deployment(client)
            hash_ = deployment["deployment_hash"]
            credentials = await enroll(client, hash_, deployment["enrollment_token"], [])
            # No control allowed: the command fails at once, its one report the final one.
            agent = CommandAgent(answers.client(proxy.url), credentials, docker_host=None, allowed=(),
                                 pending=PendingReports(tmp_path))
            async with agent.client, trio.open_nursery() as nursery:
                nursery.start_soon(agent.run)
                created = await operator.command(client, hash_, type="docker.inspect",
                                                 parameters={"container": "web"}, timeout_seconds=600)

                async def failed_and_dropped() -> bool:
                    # The server records the result before its answer reaches the
                    # agent, which drops the kept report only then.
                    status = (await operator.get(client, hash_, created["command_id"]))["status"]
                    return status == "failed" and not list(tmp_path.iterdir())

                await eventually(failed_and_dropped, DEADLINE)
                nursery.cancel_scope.cancel(reason="the server has the command's result")
            command = await operator.get(client, hash_, created["command_id"])
    assert command["error"] == "command type 'docker.inspect' is not allowed on this probe"
    assert proxy.portal_answers == 1 and proxy.reports_passed >= 1
    assert list(tmp_path.iterdir()) == []  # kept until the server took it, then dropped
    said = [r.getMessage() for r in caplog.records if f"report of {created['command_id']}" in r.getMessage()]
    assert len(said) == 1, said
    assert "200 text/html; charset=utf-8" in said[0] and "<html><head><title>Hotel Wi-Fi" in said[0], said
