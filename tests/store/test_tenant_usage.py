"""Each tenant's bytes of stored commands (``tenant_usage``), on every backend:
counted as its commands are written, changed and pruned, kept across a
restart, and the quota a new command is checked against
(``SaveCommand.max_tenant_bytes``), which an agent's result is never refused by.
On PostgreSQL the count is every replica's."""

from __future__ import annotations

import secrets
from typing import Any

import attrs
import psycopg
import pytest
import trio

from trioscope.domain.commands import Command, CommandEvent
from trioscope.store import AuditEntry, OverCommandBytes, SaveCommand, SaveDeployment, Write, open_writer
from trioscope.store._command_rows import command_columns  # what a command's row holds

from .conftest import BACKENDS, Store
from .test_postgres import _wait_for_lock_wait, as_version_3
from .test_protocol import command, completed, deployment, saved


def stored(*commands: Command) -> int:
    """What ``commands`` take as rows: their four stored values."""
    return sum(len(value) for c in commands for value in command_columns(c))


def of_tenant(i: int, tenant: str, **changes: Any) -> Command:
    return attrs.evolve(command(i, deployment_hash=f"d-{tenant}"), tenant=tenant, **changes)


def create(c: Command, limit: int) -> list[Write]:
    """A new command as its queue actor writes it, with its tenant's quota."""
    return [SaveCommand(c, None, max_tenant_bytes=limit),
            AuditEntry(at=1.0, tenant=c.tenant, actor="user:u1", action="command.create")]


async def with_deployments(store: Store, *tenants: str) -> None:
    await store.write(*(SaveDeployment(deployment(f"d-{t}", tenant=t)) for t in tenants))


async def test_a_tenants_bytes_count_its_commands_as_written_changed_and_pruned(store: Store) -> None:
    await with_deployments(store, "acme", "other")
    first, second, theirs = of_tenant(1, "acme"), of_tenant(2, "acme"), of_tenant(3, "other")
    await store.write(saved(first), saved(theirs))
    await store.write(saved(second))
    assert await store.reader.tenant_command_bytes("acme") == stored(first, second)
    assert await store.reader.tenant_command_bytes("other") == stored(theirs)
    assert await store.reader.tenant_command_bytes("nobody") == 0

    # A result is counted as it is recorded, and a change counts its new size only.
    done = completed(first, 200.0, {"log": "x" * 50_000})
    await store.write(SaveCommand(done, len(first.history)))
    assert await store.reader.tenant_command_bytes("acme") == stored(done, second) > stored(first, second) + 50_000
    cancelled = second.apply(CommandEvent.CANCEL, 201.0, {"by": "u1"})
    await store.write(SaveCommand(cancelled, len(second.history)))
    assert await store.reader.tenant_command_bytes("acme") == stored(done, cancelled)

    # Pruned commands give their bytes back; open ones and other tenants' stay.
    assert await store.prune(201.0, 100) == (1, 0)  # the one finished before 201
    assert await store.reader.tenant_command_bytes("acme") == stored(cancelled)
    assert await store.prune(300.0, 100) == (1, 0)
    assert await store.reader.tenant_command_bytes("acme") == 0
    assert await store.reader.tenant_command_bytes("other") == stored(theirs)


async def test_a_new_command_is_refused_once_its_tenant_is_at_its_quota_and_a_result_never_is(store: Store) -> None:
    await with_deployments(store, "acme", "other")
    first = of_tenant(1, "acme")
    limit = stored(first) + 1_000
    assert await store.commit(create(first, limit)) == [None]  # under the limit

    # The agent's result takes the tenant over: recorded all the same.
    done = completed(first, 200.0, {"log": "x" * 5_000})
    await store.write(SaveCommand(done, len(first.history)))
    assert await store.reader.tenant_command_bytes("acme") == stored(done) > limit

    refused, theirs = await store.commit(create(of_tenant(2, "acme"), limit), create(of_tenant(3, "other"), limit))
    assert isinstance(refused, OverCommandBytes) and refused.bytes_in_use == stored(done), refused
    assert theirs is None  # another tenant's quota is its own
    assert await store.reader.command("cmd_2") is None
    assert [r.entry.action for r in (await store.reader.audit("acme", action=None, actor=None, since=None,
                                                             until=None, limit=10, offset=0))[0]] == [
        "command.create"]  # the refused group's audit record went with it

    # At the limit is refused too; below it, a command of any size is taken.
    assert (await store.prune(300.0, 100))[0] == 1
    big = of_tenant(4, "acme", parameters={"pad": "p" * 2_000})
    assert await store.commit(create(big, stored(big))) == [None]
    [at_limit] = await store.commit(create(of_tenant(5, "acme"), stored(big)))
    assert isinstance(at_limit, OverCommandBytes) and at_limit.bytes_in_use == stored(big)
    assert await store.commit(create(of_tenant(5, "acme"), stored(big) + 1)) == [None]


async def test_creates_of_one_tenant_committed_together_count_each_other(store: Store) -> None:
    """Two of a tenant's deployments' creates in one commit: PostgreSQL's one
    statement for a call checked both against what was stored before it, and
    both went in past the quota (creates through two replicas: 7 of 5)."""
    await with_deployments(store, "acme")
    first, second = of_tenant(1, "acme"), attrs.evolve(of_tenant(2, "acme"), deployment_hash="d-acme-2")
    await store.write(SaveDeployment(deployment("d-acme-2", tenant="acme")))
    results = await store.commit(create(first, stored(first)), create(second, stored(first)))
    assert results[0] is None and isinstance(results[1], OverCommandBytes), results
    assert await store.reader.tenant_command_bytes("acme") == stored(first)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
async def test_a_tenants_bytes_are_kept_across_a_restart(backend: str, request: pytest.FixtureRequest) -> None:
    before = BACKENDS[backend](request)
    try:
        await with_deployments(before, "acme")
        done = completed(of_tenant(1, "acme"), 200.0, {"log": "y" * 10_000})
        await before.write(saved(done))
    finally:
        before.close()
    after = BACKENDS[backend](request)  # the same database, opened again
    try:
        assert await after.reader.tenant_command_bytes("acme") == stored(done)
        [refused] = await after.commit(create(of_tenant(2, "acme"), stored(done)))
        assert isinstance(refused, OverCommandBytes)
    finally:
        after.close()


# PostgreSQL: what replicas share


async def test_every_replicas_commands_count_in_their_tenants_bytes(postgres_url: str) -> None:
    tenant = f"t-{secrets.token_hex(4)}"
    a, b = open_writer(postgres_url, origin="replica-a"), open_writer(postgres_url, origin="replica-b")
    try:
        mine = [of_tenant(i, tenant) for i in range(3)]
        limit = stored(*mine[:2])
        # With a deployment in the call (the pipelined path), then alone (one statement).
        assert await trio.to_thread.run_sync(a.commit, [
            [SaveDeployment(deployment(f"d-{tenant}", tenant=tenant))], create(mine[0], limit)]) == [None, None]
        # B's own writes are none of them: the database's count is A's.
        assert await trio.to_thread.run_sync(b.commit, [create(mine[1], limit)]) == [None]
        results = await trio.to_thread.run_sync(a.commit, [create(mine[2], limit)])
        assert isinstance(results[0], OverCommandBytes) and results[0].bytes_in_use == limit
        results = await trio.to_thread.run_sync(b.commit, [[SaveDeployment(deployment(f"d2-{tenant}", tenant=tenant))],
                                                           create(mine[2], limit)])
        assert results[0] is None and isinstance(results[1], OverCommandBytes)
        # A command another replica finishes and prunes gives its bytes back to both.
        done = mine[0].apply(CommandEvent.CANCEL, 200.0)
        assert await trio.to_thread.run_sync(b.commit, [[SaveCommand(done, len(mine[0].history))]]) == [None]
        assert (await trio.to_thread.run_sync(b.prune, 300.0, 100))[0] == 1
        assert await trio.to_thread.run_sync(a.commit, [create(mine[2], limit)]) == [None]
    finally:
        a.close()
        b.close()


async def test_a_version_3_database_gets_its_tenants_bytes_counted_from_its_rows(postgres_url: str) -> None:
    writer = open_writer(postgres_url)
    made = [of_tenant(1, "acme"), completed(of_tenant(2, "acme"), 200.0, {"log": "z" * 3_000}),
            of_tenant(3, "other")]
    try:
        await trio.to_thread.run_sync(writer.commit, [[SaveDeployment(deployment("d-acme", tenant="acme")),
                                                       SaveDeployment(deployment("d-other", tenant="other"))],
                                                      [saved(c) for c in made]])
    finally:
        writer.close()
    with psycopg.connect(postgres_url, autocommit=True) as db:  # as version 3 had it
        as_version_3(db)
        db.execute("UPDATE trioscope_schema SET version = 3")
    writer = open_writer(postgres_url)
    try:
        with psycopg.connect(postgres_url) as db:
            totals = dict(db.execute("SELECT tenant, command_bytes FROM tenant_usage").fetchall())
        assert totals == {"acme": stored(*made[:2]), "other": stored(made[2])}
        later = of_tenant(4, "acme")  # and counted from then on
        assert await trio.to_thread.run_sync(writer.commit, [[saved(later)]]) == [None]
        with psycopg.connect(postgres_url) as db:
            assert db.execute("SELECT command_bytes FROM tenant_usage WHERE tenant = 'acme'").fetchone() == (
                stored(*made[:2], later),)
    finally:
        writer.close()


async def test_a_create_waits_for_another_replicas_write_of_the_tenant_and_counts_it(postgres_url: str) -> None:
    """Replica A's transaction, holding the tenant's lock, has stored a command
    that takes the tenant to its quota and not committed yet: B's create
    waits for it and is refused, not counted on what A's commit will add."""
    from trioscope.store._postgres import QUOTA_LOCK, _tenant_bytes_key  # the lock replicas take in turn

    tenant = f"t-{secrets.token_hex(4)}"
    first = of_tenant(1, tenant)
    b = open_writer(postgres_url, origin="replica-b")
    try:
        await trio.to_thread.run_sync(b.commit, [[SaveDeployment(deployment(f"d-{tenant}", tenant=tenant))]])
        with psycopg.connect(postgres_url) as a:
            a.execute(QUOTA_LOCK, (_tenant_bytes_key(tenant),))
            a.execute("INSERT INTO commands (id, deployment_hash, tenant, sequence, status, created_at, version,"
                      " document, error, history, result) VALUES (%s, %s, %s, 1, 'queued', 1.0, 1, %s, %s, %s, %s)",
                      (first.id, first.deployment_hash, tenant, *command_columns(first)))
            results: list[list[BaseException | None]] = []

            async def create_on_b() -> None:
                results.append(await trio.to_thread.run_sync(b.commit, [create(of_tenant(2, tenant),
                                                                               stored(first))]))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(create_on_b)
                with psycopg.connect(postgres_url, autocommit=True) as watcher:
                    await _wait_for_lock_wait(watcher)
                assert results == []  # waiting for A's transaction
                a.commit()
        assert isinstance(results[0][0], OverCommandBytes) and results[0][0].bytes_in_use == stored(first)
    finally:
        b.close()
