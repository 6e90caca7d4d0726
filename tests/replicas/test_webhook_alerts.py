"""Alertmanager's alerts on replicas: whichever replica the webhook reaches,
every replica's users are told (once), and every replica lists the alert as
firing until its end, also for an alert whose record is too large for its
change notification (read back from the database)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from trio_websocket import open_websocket_url

from tests.integration.test_alerts import SECRET, WEBHOOK, active, next_alert, nothing_else, user_socket, webhook_body
from tests.integration.test_commands import Operator, fresh
from tests.server_process import ServerProcess

from .cluster import operator_on
from .conftest import REPLICA_ARGS


@contextmanager
def two_replicas(postgres_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    env = {"TRIOSCOPE_ALERTS_WEBHOOK_SECRET": SECRET}
    with ServerProcess(["--database", postgres_url, *REPLICA_ARGS], env=env) as a, \
            ServerProcess(["--database", postgres_url, *REPLICA_ARGS], env=env) as b:
        yield a, b


async def hook(client: httpx.AsyncClient, server: ServerProcess, body: dict[str, Any]) -> None:
    answer = await client.post(server.base_url + WEBHOOK, json=body, headers={"Authorization": f"Bearer {SECRET}"})
    assert answer.status_code == 200, answer.text


# Kept, the second is 2,048 characters of 4 bytes: its record is over the notification's 8,000.
@pytest.mark.parametrize("description", ["short", "\U0001F525" * 9000], ids=["carried", "read-back"])
async def test_a_webhook_alert_reaches_every_replicas_users_and_listings(postgres_url: str, description: str) -> None:
    """It reached only the sockets and the listing of the replica the webhook
    reached; after its end, the others listed it as firing for 24 h."""
    with two_replicas(postgres_url) as (a, b):
        viewer = Operator(a, fresh("user"), fresh("tenant"), "VIEWER")
        firing_body = webhook_body(viewer.tenant, "firing")
        firing_body["alerts"][0]["annotations"]["description"] = description
        resolved_body = webhook_body(viewer.tenant, "resolved")
        async with httpx.AsyncClient(timeout=30) as client, \
                open_websocket_url(user_socket(a, viewer)) as on_a, \
                open_websocket_url(user_socket(b, viewer)) as on_b:
            await hook(client, a, firing_body)
            told_a, told_b = await next_alert(on_a), await next_alert(on_b)
            assert told_a == told_b and told_b["status"] == "firing"
            assert told_b["description"].startswith(description[:100])
            assert await active(client, b, operator_on(viewer, b)) == [told_b]

            await hook(client, b, firing_body)  # Alertmanager's resend, to the other replica: not news
            await nothing_else(on_a)
            await nothing_else(on_b)

            await hook(client, b, resolved_body)
            for ws in (on_a, on_b):
                assert (await next_alert(ws))["status"] == "resolved"
            assert await active(client, a, viewer) == []
            assert await active(client, b, operator_on(viewer, b)) == []
