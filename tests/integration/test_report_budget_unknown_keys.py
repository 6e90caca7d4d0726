"""Keys the report model does not know count against the agent's memory
budget: the agent's actor keeps the report packed as it came, unknown keys
included, and a report of random text under one was charged an eighth of it
(40 agents held 6.7 MiB each under a 4 MiB budget: a reviewer, measured)."""

from __future__ import annotations

import base64
import random
import time
from typing import Any

import httpx

from tests.server_process import ServerProcess
from tests.synthetic import host_report

BUDGET = 1024 * 1024


def with_unknown_key(index: int, random_bytes: int) -> dict[str, Any]:
    """A small host's report with ``random_bytes`` of random data, base64, under a key the model does not know."""
    document = host_report(index, timestamp=time.time(), containers=1, processes=5, connections=5,
                           agent_prefix="unknown-keys")
    document["attachment"] = base64.b64encode(random.Random(index).randbytes(random_bytes)).decode()
    return document


def test_a_report_whose_unknown_key_packs_over_the_budget_is_refused_as_over_it() -> None:
    with ServerProcess(["--agent-memory-budget", "1MiB"]) as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as http:
        # ~2 MiB of JSON: an eighth of it fits the budget; packed (~1.5 MiB, random text) it does not.
        response = http.post("/api/v1/reports", json=with_unknown_key(1, 1536 * 1024))
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["code"] == "memory_budget_exceeded"
        assert "agents.memory_budget" in error["message"] and "an agent may take 1.0 MiB" in error["message"]
        assert error["details"]["limit_bytes"] == BUDGET < error["details"]["estimate_bytes"]
        assert error["details"]["packed"] > BUDGET
        assert http.get("/api/v1/agents/config/unknown-keys-1").status_code == 404  # no actor holds it

        # What does fit (packed ~190 KiB) is accepted and held as it came.
        accepted = http.post("/api/v1/reports", json=with_unknown_key(2, 192 * 1024))
        assert accepted.status_code == 202, accepted.text
        latest = http.get("/api/v1/query/agents/unknown-keys-2/latest").json()["report"]
        assert len(latest["attachment"]) == 4 * 192 * 1024 // 3
