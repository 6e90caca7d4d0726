"""Idempotency keys of command creations on every backend: kept with the
command they created (both or neither), one per user and key (a second
request's group fails with ``KeyTaken``, on PostgreSQL whichever replica
wrote first), replaced once their window is over, pruned, and counted in
their tenant's bytes of stored commands."""

from __future__ import annotations

import secrets

import attrs
import trio

from trioscope.domain.commands import Command
from trioscope.domain.idempotency import WINDOW, KeptAnswer
from trioscope.store import (
    AuditEntry, KeyTaken, OverCommandBytes, SaveCommand, SaveDeployment, SaveIdempotencyKey, StoreReader, Write,
    open_writer,
)

from .conftest import Store
from .test_protocol import command, deployment
from .test_tenant_usage import stored

NOW = 1_000_000.0


def kept(c: Command, key: str = "k-1", *, user_id: str = "u1", request: str = "f" * 64,
         at: float = NOW) -> KeptAnswer:
    return KeptAnswer(tenant=c.tenant, user_id=user_id, key=key, fingerprint=request, command_id=c.id, status=202,
                      body=b'{"command_id":"%s","status":"queued"}' % c.id.encode(), created_at=at)


def create(c: Command, answer: KeptAnswer, now: float = NOW) -> list[Write]:
    """A new command with its request's key, as its queue actor writes them."""
    return [SaveCommand(c, None), AuditEntry(at=now, tenant=c.tenant, actor="user:u1", action="command.create"),
            SaveIdempotencyKey(answer, replaces_before=now - WINDOW)]


def key_bytes(answer: KeptAnswer) -> int:
    """What a key takes as a row (its tenant is the row's key in tenant_usage)."""
    return sum(map(len, (answer.user_id.encode(), answer.key.encode(), answer.fingerprint.encode(),
                         answer.command_id.encode(), answer.body)))


async def test_a_key_is_kept_with_its_command_and_a_second_use_of_it_writes_nothing(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")))
    first, second = command(1), command(2)
    answer = kept(first)
    assert await store.commit(create(first, answer)) == [None]
    assert await store.reader.idempotency_key("acme", "u1", "k-1") == answer
    assert await store.reader.command(first.id) == first

    [taken] = await store.commit(create(second, kept(second)))
    assert isinstance(taken, KeyTaken) and taken.key == "k-1"
    assert await store.reader.command(second.id) is None  # its command went with it
    assert await store.reader.idempotency_key("acme", "u1", "k-1") == answer
    # Another user's key of the same name, and another key, are their own.
    assert await store.commit(create(second, kept(second, user_id="u2")),
                              create(command(3), kept(command(3), key="k-2"))) == [None, None]
    assert (await store.reader.idempotency_key("acme", "u2", "k-1")) == kept(second, user_id="u2")
    assert await store.reader.idempotency_key("acme", "u3", "k-1") is None
    assert await store.reader.idempotency_key("other", "u1", "k-1") is None


async def test_a_key_past_its_window_is_replaced_and_pruned_and_its_bytes_counted_until_then(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")))
    first, second = command(1), command(2)
    old = kept(first, at=NOW - WINDOW - 1)
    assert await store.commit(create(first, old, now=NOW - WINDOW - 1)) == [None]
    assert await store.reader.tenant_command_bytes("acme") == stored(first) + key_bytes(old)

    new = kept(second, request="g" * 64)  # the same key, its window over: a new request may have it
    assert await store.commit(create(second, new)) == [None]
    assert await store.reader.idempotency_key("acme", "u1", "k-1") == new
    assert await store.reader.tenant_command_bytes("acme") == stored(first, second) + key_bytes(new)

    later = kept(command(3), key="k-2", at=NOW + 10)
    assert await store.commit(create(command(3), later, now=NOW + 10)) == [None]
    assert await trio.to_thread.run_sync(store.writer.prune_idempotency_keys, NOW + 1, 100) == 1
    assert await store.reader.idempotency_key("acme", "u1", "k-1") is None
    assert await store.reader.idempotency_key("acme", "u1", "k-2") == later
    assert await store.reader.tenant_command_bytes("acme") == stored(first, second, command(3)) + key_bytes(later)
    assert await trio.to_thread.run_sync(store.writer.prune_idempotency_keys, NOW + 1, 100) == 0


async def test_a_refused_command_keeps_no_key(store: Store) -> None:
    """A group refused for its quota leaves its key free for the request sent again."""
    await store.write(SaveDeployment(deployment("h1")))
    big = command(1)
    assert await store.commit(create(big, kept(big, key="k-0"))) == [None]
    refused = command(2)
    writes = create(refused, kept(refused))
    writes[0] = attrs.evolve(writes[0], max_tenant_bytes=1)
    [over] = await store.commit(writes)
    assert isinstance(over, OverCommandBytes)
    assert await store.reader.idempotency_key("acme", "u1", "k-1") is None


# PostgreSQL: what replicas share


async def test_of_two_replicas_the_first_to_store_a_key_has_it(postgres_url: str) -> None:
    tenant = f"t-{secrets.token_hex(4)}"
    a, b = open_writer(postgres_url, origin="replica-a"), open_writer(postgres_url, origin="replica-b")
    try:
        await trio.to_thread.run_sync(a.commit, [[SaveDeployment(deployment(f"d-{tenant}", tenant=tenant))]])
        on_a, on_b = (attrs.evolve(command(i, deployment_hash=f"d-{tenant}"), tenant=tenant) for i in (1, 2))
        assert await trio.to_thread.run_sync(a.commit, [create(on_a, kept(on_a))]) == [None]
        # B's group with the key is refused alone: the other group of its call is written.
        results = await trio.to_thread.run_sync(b.commit, [
            create(on_b, kept(on_b)), [SaveDeployment(deployment(f"d2-{tenant}", tenant=tenant))]])
        assert isinstance(results[0], KeyTaken) and results[1] is None, results
        reader = StoreReader(postgres_url)
        try:
            assert await reader.command(on_b.id) is None
            assert await reader.idempotency_key(tenant, "u1", "k-1") == kept(on_a)
            assert await reader.deployment(f"d2-{tenant}") is not None
        finally:
            reader.close()
    finally:
        a.close()
        b.close()
