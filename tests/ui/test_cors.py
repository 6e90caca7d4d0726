"""Cross-origin use of the API from a real browser: a page served from another
origin (another port: another origin) calls the API with a bearer token (a
preflighted request) and opens the live WebSocket, as a dashboard hosted
elsewhere would. Allowed with --cors-origins naming that origin; refused by
the browser and the server otherwise (the default)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.server_process import ServerProcess

PAGE = b"""<!doctype html><html><head><title>elsewhere</title></head><body>
<script>
window.tryApi = async (base, token) => {
  const found = {};
  try {
    const answer = await fetch(base + "/api/v1/users/me", {headers: {"Authorization": "Bearer " + token}});
    found.status = answer.status;
    found.user = (await answer.json()).user_id;
    found.requestId = answer.headers.get("X-Request-Id");
  } catch (error) {
    found.fetchError = String(error);
  }
  found.socket = await new Promise(resolve => {
    const socket = new WebSocket(base.replace("http", "ws") + "/api/v1/ws?view=hosts", ["trioscope", "bearer." + token]);
    socket.onmessage = event => { resolve(JSON.parse(event.data).type); socket.close(); };
    socket.onerror = () => resolve("error");
  });
  return found;
};
</script></body></html>"""


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802  # http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def elsewhere() -> Iterator[str]:
    """A page on another origin: its own web server on another port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _try_from(browser: Browser, origin: str, server: ServerProcess) -> dict[str, Any]:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{origin}/")
        return page.evaluate("([base, token]) => tryApi(base, token)", [server.base_url, server.user_token()])
    finally:
        context.close()


def test_a_page_of_a_listed_origin_calls_the_api_and_opens_the_websocket(browser: Browser, elsewhere: str) -> None:
    with ServerProcess(["--cors-origins", elsewhere, "--protect-reads", "true"]) as server:
        found = _try_from(browser, elsewhere, server)
    assert found.get("status") == 200 and found.get("user") == "alice", found
    assert found.get("requestId"), found  # exposed to the page's script
    assert found["socket"] == "topology_update", found


def test_by_default_a_page_of_another_origin_gets_nothing(browser: Browser, elsewhere: str) -> None:
    with ServerProcess(["--protect-reads", "true"]) as server:
        found = _try_from(browser, elsewhere, server)
    assert "fetchError" in found and "status" not in found, found  # the browser blocked it
    assert found["socket"] == "error", found  # the server refused the handshake (403)
