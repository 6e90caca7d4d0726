"""A real Chromium against a real server: each test gets a fresh page whose
console errors fail it, and a screenshot of how it ended in test-artifacts/ui/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import trio
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, WebSocket, WebSocketRoute, sync_playwright

from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent
from tests.synthetic import host_report
from trioscope.domain.topology import node_scope

from .browser import ARTIFACTS, launch

TIMEOUT_MS = 15_000

ACME = node_scope("acme")
"""What the node ids of a probe enrolled in a deployment of tenant acme (the
tenant ``Ui.open`` signs in to) end in, after ``@``; unsigned reports' have none."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One browser per module: Playwright's sync API leaves its asyncio loop
    running on the main thread while it is open, and a test after it in the
    same process that runs asyncio (the bus tests: nats-py) then fails with
    "asyncio.run() cannot be called from a running event loop" (with the
    suite spread over workers, a worker may take bus tests after UI tests)."""
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    with ServerProcess() as process:
        yield process


@attrs.define
class HeldUpdates:
    """The page's live views, their ``topology_update`` frames held back while
    ``holding`` (as a page too busy to read them), then let through."""

    frames: list[Any] = attrs.field(factory=list)
    pages: list[WebSocketRoute] = attrs.field(factory=list)
    holding: bool = False

    @classmethod
    def on(cls, page: Page) -> HeldUpdates:
        """Route ``page``'s live views through a ``HeldUpdates`` (before the page opens them)."""
        held = cls()

        def route(ws: WebSocketRoute) -> None:
            server = ws.connect_to_server()

            def from_server(message: Any) -> None:
                if held.holding and '"topology_update"' in str(message):
                    held.frames.append(message)
                    return
                ws.send(message)

            server.on_message(from_server)
            held.pages.append(ws)

        page.route_web_socket("**/api/v1/ws*", route)
        return held

    def release(self) -> None:
        """Stop holding, and send the last live view what was held."""
        self.holding = False
        frames, self.frames = self.frames, []
        for frame in frames:
            self.pages[-1].send(frame)


@attrs.define
class Ui:
    """The page, and what a user would do and see on it."""

    page: Page
    server: ServerProcess
    errors: list[str] = attrs.field(factory=list)
    expected: list[str] = attrs.field(factory=list)
    """Console errors a test provokes on purpose (Chromium logs every 4xx it fetched)."""
    sockets: list[str] = attrs.field(factory=list)
    """URLs of the WebSockets the page opened."""
    events: WebSocket | None = None
    """The page's latest /ws/user socket (commands', agents' and alerts' events)."""
    event_frames: list[str] = attrs.field(factory=list)
    """What the server sent on it (``Ui.events``), in order."""

    def opened(self, socket: WebSocket) -> None:
        """``page.on("websocket")``: every socket is listed; the events socket's frames are kept."""
        self.sockets.append(socket.url)
        if "/ws/user/" in socket.url:
            self.events, self.event_frames = socket, []
            frames = self.event_frames
            socket.on("framereceived", lambda payload: frames.append(str(payload)))

    def wait_for_events(self) -> None:
        """Until the page's /ws/user socket has its first frame (``initial_state``):
        the server sends it once the socket watches the events, so every event
        told from then on reaches the page."""
        if self.events is None:  # ``opened``, the page's first listener, sees it before this wait ends
            self.page.wait_for_event("websocket", predicate=lambda s: "/ws/user/" in s.url)
        assert self.events is not None
        if not any('"initial_state"' in frame for frame in self.event_frames):
            self.events.wait_for_event("framereceived", predicate=lambda payload: '"initial_state"' in str(payload))

    def open(self, query: str = "", *, token: str | None = None, role: str = "OPERATOR",
             user: str = "alice", tenant: str = "acme") -> None:
        """Load the page and sign in through the sign-in dialog."""
        self.page.goto(f"{self.server.base_url}/{query}")
        self.page.wait_for_selector("#signin[open]")
        self.page.fill("#signin-token", token or self.server.user_token(user, tenant, role))
        self.page.click("#signin-submit")
        self.page.wait_for_selector("html[data-ready=true]")

    def node_ids(self) -> set[str]:
        return set(self.page.evaluate("trioscope.nodeIds()"))

    def wait_for_nodes(self, ids: set[str], *, present: bool = True) -> None:
        """Wait until every one of ``ids`` is shown, laid out and drawn (or, with
        present=False, none is in the page's topology)."""
        self.page.wait_for_function(
            "([ids, present]) => { const shown = new Set(trioscope.nodeIds());"
            " return ids.every(id => present ? shown.has(id) && trioscope.rendered(id)"
            " : !shown.has(id)); }", arg=[sorted(ids), present])

    def positions(self, ids: set[str]) -> dict[str, tuple[float, float]]:
        found = self.page.evaluate("ids => Object.fromEntries(ids.map(id => [id, trioscope.position(id)]))", sorted(ids))
        return {i: (p["x"], p["y"]) for i, p in found.items() if p is not None}

    def counts(self) -> str:
        return self.page.inner_text("#counts")

    def shown(self) -> int:
        return int(self.page.get_attribute("#counts", "data-shown") or "0")

    def click_node(self, node_id: str) -> None:
        """Click the node where the graph draws it."""
        x, y = self.positions({node_id})[node_id]
        self.page.mouse.click(x, y)


@pytest.fixture
def ui(browser: Browser, server: ServerProcess, request: pytest.FixtureRequest) -> Iterator[Ui]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    ui = Ui(page, server)

    def console(message: ConsoleMessage) -> None:
        ours = message.type == "warning" and message.text.startswith("trioscope:")  # the page's own complaints
        if (message.type == "error" or ours) and not any(e in message.text for e in ui.expected):
            ui.errors.append(f"console: {message.text} ({message.location.get('url')})")

    page.on("console", console)
    page.on("pageerror", lambda error: ui.errors.append(f"page error: {error}"))
    page.on("websocket", lambda socket: ui.opened(socket))
    yield ui
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    context.close()
    assert ui.errors == [], "the page logged errors"
    assert [url for url in ui.sockets if "token" in url] == [], "a token in a URL ends up in proxy logs"


def post_report(server: ServerProcess, index: int, *, timestamp: float | None = None,
                signer: StatusAgent | None = None, engine: dict[str, Any] | None = None, **sizes: Any) -> None:
    """A probe's report for host number ``index`` (accepted: 202); signed with
    ``signer``'s credentials, as a probe enrolled in its deployment sends it;
    ``engine``: keys of its ``docker_info`` instead of the synthetic ones
    (``reachable``, ``problem``, ``containers``)."""
    sizes = {"containers": 4, "processes": 8, "connections": 6, **sizes}
    body = host_report(index, timestamp=time.time() if timestamp is None else timestamp, **sizes)
    if engine is not None:
        body["docker_info"] = {**body["docker_info"], **engine}
    response = (trio.run(_signed_post, signer, "/api/v1/reports", body) if signer is not None
                else httpx.post(f"{server.base_url}/api/v1/reports", json=body, timeout=10))
    assert response.status_code == 202, response.text


def register_agent(server: ServerProcess, index: int, agent: StatusAgent) -> None:
    """What a probe enrolled in a deployment does first: say whose it is,
    signed with the deployment agent's credentials (which proves it)."""
    response = trio.run(_signed_post, agent, "/api/v1/agents/register", {
        "agent_id": f"agent-{index}", "hostname": f"host-{index}", "metadata": {"deployment_hash": agent.deployment_hash}})
    assert response.status_code == 201, response.text


async def _signed_post(agent: StatusAgent, path: str, document: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await agent.signed_post(client, path, document)
