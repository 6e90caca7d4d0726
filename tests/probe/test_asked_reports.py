"""A container control is followed by a report at once: the topology showed
the old state until the next regular report (13-25 s with the default
interval). Asks are coalesced: a burst of them is one report, one a second at
most."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from tests.probe.trioscope_answers import report_taken
from tests.synthetic import host_report
from trioscope.wire import decode_report
from trioscope_probe._agent import CommandAgent, Credentials
from trioscope_probe._executor import DEFAULT_ALLOWED, ControlError
from trioscope_probe._transport import ASKED_REPORT_GAP, ReportRequests, run_publisher

INTERVAL = 15.0


def _accept_everything(request: httpx.Request) -> httpx.Response:
    if request.url.path.startswith("/api/v1/agents/config"):
        return httpx.Response(404)
    return httpx.Response(201 if request.url.path.endswith("/register") else 202, json={})


async def test_asks_give_one_report_at_once_and_a_burst_gives_one(
        autojump_clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def inline(function: Any, *args: Any, **_: Any) -> Any:
        return function(*args)  # the mock clock would jump while a worker thread collects

    monkeypatch.setattr(trio.to_thread, "run_sync", inline)
    collected: list[float] = []
    reports: list[float] = []

    def collect() -> Any:
        collected.append(trio.current_time())
        return decode_report(host_report(1, timestamp=1_800_000_000.0, processes=2, connections=2, peers=[2]))

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/reports":
            reports.append(trio.current_time())
        return _accept_everything(request)

    asked = ReportRequests()

    async def controls() -> None:
        await trio.sleep(3.0)
        for _ in range(5):  # five controls ending together
            asked.ask()
        for _ in range(3):  # three more while the report they asked for is sent: one more report, a second on
            await trio.sleep(0.2)
            asked.ask()

    start = trio.current_time()
    with trio.move_on_after(INTERVAL - 1):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(controls)
            await run_publisher("http://server", "probe-1", "host", INTERVAL, 40, collect, asked=asked,
                                transport=httpx.MockTransport(server))
    assert [round(t - start, 3) for t in collected] == [0.0, 3.0, 3.0 + ASKED_REPORT_GAP]
    assert len(reports) == 3  # each one sent, none waiting for the interval


async def test_without_asks_reports_keep_the_interval(autojump_clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def inline(function: Any, *args: Any, **_: Any) -> Any:
        return function(*args)

    monkeypatch.setattr(trio.to_thread, "run_sync", inline)
    collected: list[float] = []

    def collect() -> Any:
        collected.append(trio.current_time())
        return decode_report(host_report(1, timestamp=1_800_000_000.0, processes=2, connections=2, peers=[2]))

    start = trio.current_time()
    with trio.move_on_after(3 * INTERVAL - 1):
        await run_publisher("http://server", "probe-1", "host", INTERVAL, 40, collect, asked=ReportRequests(),
                            transport=httpx.MockTransport(_accept_everything))
    assert [round(t - start, 3) for t in collected] == [0.0, INTERVAL, 2 * INTERVAL]


@pytest.mark.parametrize(("kind", "outcome", "asks"), [
    ("docker.stop", "completed", 1), ("docker.start", "completed", 1), ("docker.remove", "completed", 1),
    ("docker.pause", "completed", 1), ("docker.unpause", "completed", 1), ("docker.restart", "completed", 1),
    ("docker.stop", "failed", 1),  # a stop that failed here may still have changed the container
    ("docker.inspect", "completed", 0), ("docker.logs", "completed", 0), ("docker.exec", "completed", 0),
])
async def test_a_control_that_changes_containers_asks_for_a_report(
        kind: str, outcome: str, asks: int, monkeypatch: pytest.MonkeyPatch) -> None:
    statuses: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        statuses.append(json.loads(request.content)["status"])
        return report_taken(request)

    def execute(kind: str, parameters: Any) -> dict[str, Any]:
        if outcome == "failed":
            raise ControlError("the engine refused")
        return {"container_id": "c1", "state": "exited"}

    changed: list[str] = []
    client = httpx.AsyncClient(transport=httpx.MockTransport(server), base_url="http://server")
    agent = CommandAgent(client, Credentials("dep", "agent-1", "token-1"), docker_host=None,
                         allowed=(*DEFAULT_ALLOWED, "docker.exec"),  # exec is allowed only when asked for
                         containers_changed=lambda: changed.append(statuses[-1]))
    monkeypatch.setattr(agent, "_execute", execute)
    await agent._run_command({"command_id": "cmd_1", "type": kind, "parameters": {"container": "c1"},
                              "timeout_seconds": 30})
    assert statuses == ["executing", outcome]
    assert changed == ["executing"] * asks  # asked before the result is sent (which may take retries)
