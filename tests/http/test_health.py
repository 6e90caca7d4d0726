"""Liveness, readiness and the detailed health of a running app (in process:
the states a real server passes through too fast to catch, such as stopping)."""

from __future__ import annotations

import time

import pytest

from trioscope.actors.store import GetAway
from trioscope.domain.principals import Role, mint_user_token
from trioscope.http import create_app, stop_live_updates
from trioscope.http._health_checks import ComponentHealth
from trioscope.http._services import services_of
from trioscope.runtime import open_actor_system
from trioscope.store import token_secret
from trioscope.system import supervision_tree


@pytest.fixture
async def running(settings):
    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)
        async with app.test_app() as test_app:
            yield app, test_app.test_client()


def _token(settings, role: str) -> dict[str, str]:
    secret = token_secret(settings.auth.secret, settings.storage.data_dir)
    token = mint_user_token(secret, user_id="root", tenant="ops", role=Role(role), now=time.time(), ttl=600)
    return {"Authorization": f"Bearer {token}"}


async def test_health_keeps_the_seeds_shape_and_names_each_service(running):
    _app, client = running
    response = await client.get("/health")
    body = await response.get_json()
    assert response.status_code == 200 and body["status"] == "healthy" and body["timestamp"].endswith("Z")
    assert body["services"] == {"store": "connected", "actors": "running", "topology": "loaded",
                                "queues": "processing"}


async def test_ready_until_the_server_stops(running):
    app, client = running
    response = await client.get("/health/ready")
    assert response.status_code == 200 and (await response.get_json())["status"] == "ready"
    stop_live_updates(app)  # what SIGTERM does first
    response = await client.get("/health/ready")
    body = await response.get_json()
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert body["status"] == "not_ready" and body["reason"] == "the server is stopping"
    assert (await client.get("/health")).status_code == 200  # alive all the same: no restart wanted


async def test_not_ready_while_the_store_cannot_be_read(running):
    app, client = running
    services_of(app).reader.close()
    response = await client.get("/health/ready")
    body = await response.get_json()
    assert response.status_code == 503
    assert body["reason"].startswith("store: cannot read the database") and body["services"]["store"] == "unavailable"


async def test_not_ready_while_the_store_refuses_commits(running):
    """The store publishes why it refuses commits (its writer cannot reach the
    database, ``test_store_outage``; the SQLite file's disk fails,
    ``test_store_faults``); reads may work meanwhile. Said with the code its
    refusals are answered with: this app's store is SQLite."""
    app, client = running
    away = await services_of(app).store.ask(GetAway())
    away.publish("OperationalError: disk I/O error")
    response = await client.get("/health/ready")
    body = await response.get_json()
    assert response.status_code == 503 and body["services"]["store"] == "unavailable"
    assert body["reason"] == "store: writes refused (answered 503 store_failing): OperationalError: disk I/O error"
    away.publish(None)  # reconnected
    assert (await client.get("/health/ready")).status_code == 200


async def test_a_configured_backend_adds_its_own_check(running):
    app, client = running

    async def bus(_services, _detailed):
        return ComponentHealth(status="catching_up", ready=False, reason="replaying the stream (40%)")

    services_of(app).health.add("bus", bus)
    assert (await (await client.get("/health")).get_json())["services"]["bus"] == "catching_up"
    response = await client.get("/health/ready")
    assert response.status_code == 503 and (await response.get_json())["reason"] == "bus: replaying the stream (40%)"


async def test_detailed_is_for_admins_and_has_the_figures(running, settings):
    _app, client = running
    assert (await client.get("/health/detailed")).status_code == 401
    assert (await client.get("/health/detailed", headers=_token(settings, "VIEWER"))).status_code == 403
    response = await client.get("/health/detailed", headers=_token(settings, "ADMIN"))
    body = await response.get_json()
    assert response.status_code == 200 and body["ready"] is True and body["uptime_seconds"] >= 0
    assert body["components"]["store"]["read_latency_ms"] >= 0
    tree = {entry["path"]: entry for entry in body["components"]["actors"]["tree"]}
    assert tree["/root/topology"]["mailbox_capacity"] > 0 and tree["/root/topology"]["restarts"] == 0
    assert tree["/root/agents"]["children"] == 0  # supervisors of many children are summed
    assert body["components"]["queues"]["polls_waiting"] == 0
    assert body["clients"] == {"websockets": 0, "links": 0, "polls_waiting": 0, "agents": 0}
