"""Reports refused in the worker thread (over the memory budget, invalid)
leave nothing of themselves behind, and a report far over the budget is
refused before it is decoded.

A refusal raised through ``trio.to_thread.run_sync`` was held in reference
cycles with every frame it came through, the parsed and decoded report
among their locals: freed only by a full collection, which the server makes
rare (``gc.freeze``, high thresholds). 10 MB reports refused 413 took the
server from 98 MB to 961 MB, to stay. Here the collector is off while the
requests run: what reference counting does not free is what the server kept.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

import attrs
import orjson
import pytest
from quart.typing import TestClientProtocol as Client

from trioscope.config import Settings
from trioscope.wire import rfc3339_seconds
from trioscope.http import _reports, create_app
from trioscope.http._bodies import OFF_LOOP_BYTES
from trioscope.runtime import open_actor_system
from trioscope.system import supervision_tree
from trioscope.wire import _models

MIB = 1024**2
CONNECTIONS = 2500
"""Distinct client connections: ~3.4 MiB estimated, ~10 MiB as the most the
lengths allow (``MemoryBudget.check_document``), a body over ``OFF_LOOP_BYTES``."""
WIRE_MODELS = tuple(value for value in vars(_models).values() if isinstance(value, type) and attrs.has(value))


def _report(*, invalid: bool = False) -> bytes:
    connections: list[dict[str, Any]] = [
        {"protocol": "tcp", "local_address": "10.9.9.9", "local_port": 1000 + i, "remote_address": f"10.1.{i // 250}.{i % 250}",
         "remote_port": 80, "state": "ESTABLISHED"} for i in range(CONNECTIONS)]
    if invalid:
        connections[-1]["remote_port"] = "eighty"
    body = orjson.dumps({"agent_id": "big", "hostname": "big", "timestamp": rfc3339_seconds(time.time()),
                         "host_info": {"hostname": "big"}, "network_info": {"connections": connections}})
    assert len(body) > OFF_LOOP_BYTES  # decoded in the worker thread
    return body


@contextlib.asynccontextmanager
async def _serving(settings: Settings, budget: int) -> AsyncIterator[Client]:
    settings = attrs.evolve(settings, agents=attrs.evolve(settings.agents, memory_budget=budget))
    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)
        async with app.test_app() as test_app:
            yield test_app.test_client()


def _kept() -> int:
    """Report records alive, decoded (the wire's models) or parsed (a connection's dict)."""
    return sum(1 for o in gc.get_objects() if type(o) in WIRE_MODELS or (type(o) is dict and "remote_port" in o))


async def _post(client: Client, body: bytes) -> tuple[int, dict[str, Any]]:
    response = await client.post("/api/v1/reports", data=body, headers={"Content-Type": "application/json"})
    return response.status_code, (await response.get_json())["error"]


@pytest.mark.parametrize(("budget", "invalid", "status", "said"), [
    (3 * MIB, False, 413, "would take about"),  # decoded, then over by the estimate
    (1 * MIB, False, 413, "would take at least"),  # refused before decoding
    (4 * MIB, True, 400, "$.network_info.connections[2499].remote_port"),  # invalid
], ids=["over-the-estimate", "over-before-decoding", "invalid"])
async def test_refused_reports_keep_nothing(settings: Settings, budget: int, invalid: bool, status: int,
                                            said: str) -> None:
    body = _report(invalid=invalid)
    async with _serving(settings, budget) as client:
        await _post(client, body)  # the first: whatever is made once (hooks, caches)
        gc.collect()
        gc.disable()
        try:
            before = _kept()
            for _ in range(3):
                code, error = await _post(client, body)
                assert code == status and said in error["message"], error["message"]
            kept = _kept() - before
        finally:
            gc.enable()
    assert kept == 0, f"{kept} report records kept by 3 refused reports"


async def test_a_report_far_over_the_budget_is_refused_before_it_is_decoded_with_the_same_details(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[int] = []

    def decode_report(document: Any) -> _models.Report:
        decoded.append(1)
        return original(document)

    original = _reports.decode_report
    monkeypatch.setattr(_reports, "decode_report", decode_report)
    body = _report()
    async with _serving(settings, 3 * MIB) as client:
        late_status, late = await _post(client, body)
    assert decoded == [1]
    async with _serving(settings, 1 * MIB) as client:
        early_status, early = await _post(client, body)
    assert decoded == [1]  # not again

    assert late_status == early_status == 413
    assert late["code"] == early["code"] == "memory_budget_exceeded"
    assert early["details"].keys() == late["details"].keys()
    assert early["details"]["key"] == "agents.memory_budget" and early["details"]["limit_bytes"] == 1 * MIB
    assert 1 * MIB < early["details"]["estimate_bytes"] <= late["details"]["estimate_bytes"]
    assert early["details"]["outgoing"] == late["details"]["outgoing"] == CONNECTIONS
    assert early["message"].endswith("an agent may take 1.0 MiB (agents.memory_budget)")
