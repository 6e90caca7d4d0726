"""The newest status of each app of a deployment (``SaveAppStatus``), on every
backend: kept whole, an older one refused (``Outdated``) with its group, a new
app beyond its deployment's ``max_apps`` refused (``OverQuota``), and on
PostgreSQL each one kept announced to the other replicas with its status."""

from __future__ import annotations

import secrets

import attrs
import psycopg
import pytest
import trio

from trioscope.domain.apps import AppStatus
from trioscope.store import (
    AuditEntry, Outdated, OverQuota, SaveAppStatus, SaveDeployment, StoreReader, decode_change, open_writer,
)

from .conftest import Store
from .test_postgres import as_version_5, drain, listening  # noqa: F401 (a fixture)
from .test_protocol import deployment


def app(code: str, *, deployment_hash: str = "h1", at: float = 100.0, **changes: object) -> AppStatus:
    return AppStatus(**{"deployment_hash": deployment_hash, "app_code": code, "status": "running",
                        "logs": ("status=ok container_state=running", "é \x00 ✓"), "updated_at": at,
                        "received_at": at + 0.5, "agent_id": "agent-1", **changes})  # type: ignore[arg-type]


def audit(code: str) -> AuditEntry:
    return AuditEntry(at=1.0, tenant="acme", actor="agent:agent-1", action="app.status", resource_type="app",
                      resource_id=code, outcome="running")


async def audited(store: Store) -> list[str | None]:
    records, _ = await store.reader.audit(None, action="app.status", actor=None, since=None, until=None, limit=50,
                                          offset=0, every_tenant=True)
    return [r.entry.resource_id for r in records]


async def test_the_newest_status_of_each_app_is_kept_whole_and_read_back_by_app_code(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")), SaveDeployment(deployment("h2")))
    web, db, other = app("web"), app("db", logs=()), app("web", deployment_hash="h2", status="error")
    await store.write(SaveAppStatus(web, max_apps=10), SaveAppStatus(db, max_apps=10), SaveAppStatus(other))
    assert await store.reader.app_statuses("h1") == [db, web]
    assert await store.reader.app_statuses("h2") == [other]
    assert await store.reader.app_statuses("nowhere") == []

    later = app("web", at=200.0, status="stopped", logs=("a",), agent_id="agent-2")
    await store.write(SaveAppStatus(later, max_apps=10))
    same_time = app("web", at=200.0, status="error", logs=())  # the later arrival wins: seconds are coarse
    await store.write(SaveAppStatus(same_time, max_apps=10))
    assert await store.reader.app_statuses("h1") == [db, same_time]


async def test_an_older_status_is_outdated_and_its_group_not_written(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")))
    await store.write(SaveAppStatus(app("web", at=200.0), max_apps=10), audit("web"))
    [error, fine] = await store.commit([SaveAppStatus(app("web", at=199.0, status="error")), audit("older")],
                                       [SaveAppStatus(app("db", at=1.0)), audit("db")])
    assert isinstance(error, Outdated) and fine is None
    assert await store.reader.app_statuses("h1") == [app("db", at=1.0), app("web", at=200.0)]
    assert await audited(store) == ["db", "web"]


async def test_a_new_app_beyond_its_deployments_limit_is_over_quota_and_the_others_go_on(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")), SaveDeployment(deployment("h2")))
    await store.write(*(SaveAppStatus(app(f"app-{i}"), max_apps=3) for i in range(3)))
    [error] = await store.commit([SaveAppStatus(app("one-more"), max_apps=3), audit("one-more")])
    assert isinstance(error, OverQuota) and error.in_use == 3
    # The apps it has still change; another deployment has its own count; no limit, no refusal.
    await store.write(SaveAppStatus(app("app-1", at=300.0, status="stopped"), max_apps=3))
    await store.write(SaveAppStatus(app("one-more", deployment_hash="h2"), max_apps=3))
    await store.write(SaveAppStatus(app("unlimited")))
    assert [a.app_code for a in await store.reader.app_statuses("h1")] == ["app-0", "app-1", "app-2", "unlimited"]
    assert (await store.reader.app_statuses("h1"))[1].status == "stopped"
    assert await audited(store) == []


async def test_the_apps_of_a_deployment_come_in_app_code_order_bytewise(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")))
    codes = ["b", "B", "a-1", "a_1", "a.1", "Z", "10", "9"]
    await store.write(*(SaveAppStatus(app(code)) for code in codes))
    assert [a.app_code for a in await store.reader.app_statuses("h1")] == sorted(codes)


async def test_each_app_status_kept_is_announced_with_its_status(
        postgres_url: str, listening: psycopg.Connection) -> None:  # noqa: F811 (the fixture)
    writer = open_writer(postgres_url, origin=(origin := f"replica-a-{secrets.token_hex(4)}"))
    try:
        await trio.to_thread.run_sync(writer.commit, [[SaveDeployment(deployment("h1"))]])
        drain(listening, 1, origin)
        kept = app("web", at=150.5, status="stopped")
        results = await trio.to_thread.run_sync(writer.commit, [
            [SaveAppStatus(kept, max_apps=5)], [SaveAppStatus(app("web", at=100.0), max_apps=5)]])
        assert results[0] is None and isinstance(results[1], Outdated)
        [payload] = drain(listening, 1, origin)
    finally:
        writer.close()
    change = decode_change(payload)
    assert (change.kind, change.id, change.deployment_hash, change.version) == ("app", "web", "h1", None)
    assert change.app is not None and attrs.astuple(change.app) == ("stopped", 150.5)


@pytest.mark.parametrize("payload", [
    '{"origin":"o","kind":"app","id":"web","deployment_hash":"h1","version":null}',
    '{"origin":"o","kind":"app","id":"web","deployment_hash":"h1","version":null,"app":{"status":1,"updated_at":1}}',
    '{"origin":"o","kind":"app","id":"web","deployment_hash":"h1","version":null,"app":{"status":"x","updated_at":true}}',
    '{"origin":"o","kind":"agent","id":"a","deployment_hash":"h1","version":null,"app":{"status":"x","updated_at":1}}',
])
def test_an_app_change_without_its_status_or_another_with_one_is_no_change(payload: str) -> None:
    with pytest.raises(ValueError, match="app is not an app's status"):
        decode_change(payload)


async def test_a_version_5_postgresql_database_gets_the_apps_table(postgres_url: str) -> None:
    open_writer(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as db:  # as version 5 had it
        as_version_5(db)
        db.execute("UPDATE trioscope_schema SET version = 5")
    writer = open_writer(postgres_url)
    try:
        kept = app("web")
        assert await trio.to_thread.run_sync(writer.commit, [[SaveDeployment(deployment("h1"))],
                                                             [SaveAppStatus(kept, max_apps=1)]]) == [None, None]
    finally:
        writer.close()
    reader = StoreReader(postgres_url)
    try:
        assert await reader.app_statuses("h1") == [kept]
    finally:
        reader.close()
