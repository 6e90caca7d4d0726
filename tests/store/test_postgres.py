"""What the PostgreSQL store does beyond the protocol every backend passes
(test_protocol.py): the change notifications replicas listen to, its schema
versions, and its errors when the database is unreachable, refuses a value
or drops the connection."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator

import attrs
import orjson
import psycopg
import pytest
import trio

from trioscope.domain.commands import Command, CommandEvent
from trioscope.domain.deployments import DeploymentStatus
from trioscope.store import (
    CHANGES_CHANNEL,
    PAYLOAD_LIMIT,
    AuditEntry,
    Change,
    Conflict,
    ForgetAgents,
    NewerSchema,
    OpenCommandsQuota,
    OverQuota,
    PostgresReader,
    Rejected,
    SaveAgent,
    SaveCommand,
    SaveDeployment,
    StoreReader,
    Unavailable,
    Write,
    decode_change,
    encode_change,
    open_writer,
)

from trioscope.store._changes import origin_prefix  # how the listener skips its own replica's changes
from trioscope.store._command_rows import command_columns  # what the writer stores, and so announces

from .test_protocol import agent, command, deployment, saved


SENTINEL = "drain-end-"
"""The start of the payload ``drain`` sends itself after the changes it waits for."""


def drain(db: psycopg.Connection, count: int, origin: str) -> list[str]:
    """The payloads from writer ``origin`` that ``db`` (LISTENing) receives:
    wait (at most 10 s) until ``count`` arrived, then for a notification of
    its own sent after them (PostgreSQL delivers them in commit order), so
    that any the writes announced that they should not have are in too. The
    channel is the whole database's, so other tests' writers (in other
    schemas) are heard too, and skipped."""
    received: list[str] = []
    deadline = time.monotonic() + 10.0

    def take(notifies: Iterator[psycopg.Notify]) -> bool:
        """Those of ``origin`` kept; True once this drain's own notification came."""
        for notify in notifies:
            if notify.payload == mark:
                return True
            if not notify.payload.startswith(SENTINEL) and decode_change(notify.payload).origin == origin:
                received.append(notify.payload)
        return False

    mark = ""
    while len(received) < count and time.monotonic() < deadline:
        take(db.notifies(timeout=0.2))
    mark = f"{SENTINEL}{secrets.token_hex(8)}"
    db.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, mark))
    while not take(db.notifies(timeout=0.2)):
        assert time.monotonic() < deadline + 10.0, "drain's own notification never came back"
    return received


@pytest.fixture
def listening(postgres_url: str) -> Iterator[psycopg.Connection]:
    """A LISTEN on the changes channel, on a connection of its own (as a replica's)."""
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(f"LISTEN {CHANGES_CHANNEL}")
        yield db


async def test_each_committed_change_is_announced_once_with_the_writers_origin(
        postgres_url: str, listening: psycopg.Connection) -> None:
    writer = open_writer(postgres_url, origin=(origin := f"replica-a-{secrets.token_hex(4)}"))
    try:
        queued = command(1)
        sent = queued.apply(CommandEvent.DELIVER, 101.0)
        results = await trio.to_thread.run_sync(writer.commit, [
            [SaveDeployment(deployment("h1")), SaveAgent(agent("a1")), SaveAgent(agent("a2"))],
            [saved(queued), AuditEntry(at=1.0, tenant="acme", actor="user:u1", action="command.create")],
            [saved(sent, queued)],
            [saved(sent.apply(CommandEvent.PROGRESS, 102.0), queued)],  # stale: a conflict, announces nothing
            [SaveAgent(agent("a9", deployment_hash="missing"))],  # rejected: announces nothing
            [ForgetAgents(("a1", "never-saved"))],
        ])
        assert [type(r) for r in results] == [type(None), type(None), type(None), Conflict, Rejected, type(None)]
        expected = [
            Change(origin=origin, kind="deployment", id="h1", deployment_hash="h1", version=None),
            Change(origin=origin, kind="agent", id="a1", deployment_hash="h1", version=None),
            Change(origin=origin, kind="agent", id="a2", deployment_hash="h1", version=None),
            Change(origin=origin, kind="command", id="cmd_1", deployment_hash="h1", version=1),
            Change(origin=origin, kind="command", id="cmd_1", deployment_hash="h1", version=2),
            # a1 forgotten: the same payload as its save in this transaction,
            # which PostgreSQL folds into one notification ("a1 changed: read it").
        ]
        payloads = await trio.to_thread.run_sync(drain, listening, len(expected), origin)
        changes = [decode_change(p) for p in payloads]
        assert changes == expected
        assert payloads[3].startswith('{"origin":"' + origin + '","kind":"command","id":"cmd_1",'
                                      '"deployment_hash":"h1","version":1,"row":[')
        # Each command change carries the command as that change committed it:
        # the replica that hears of it has no row to read back.
        assert [c.command for c in changes[3:]] == [queued, sent]
        assert [c.command for c in changes[:3]] == [None, None, None]
    finally:
        writer.close()


async def test_command_and_audit_writes_alone_are_announced_in_their_groups_order_and_a_conflict_alone_is_not(
        postgres_url: str, listening: psycopg.Connection) -> None:
    # Commands and audit records alone go in one statement (the common call);
    # a stale compare-and-set rolls it back, and the groups are written again one by one.
    writer = open_writer(postgres_url, origin=(origin := f"replica-s-{secrets.token_hex(4)}"))
    try:
        await trio.to_thread.run_sync(writer.commit, [[SaveDeployment(deployment("h1"))]])
        await trio.to_thread.run_sync(drain, listening, 1, origin)
        one, two = command(1), command(2)
        entry = AuditEntry(at=1.0, tenant="acme", actor="user:u1", action="command.create", details={"n": 2})
        assert await trio.to_thread.run_sync(writer.commit, [[saved(two), entry], [saved(one)]]) == [None, None]
        sent = one.apply(CommandEvent.DELIVER, 101.0)
        stale = two.apply(CommandEvent.DELIVER, 101.0)
        results = await trio.to_thread.run_sync(writer.commit, [[saved(sent, one)], [SaveCommand(stale, 5), entry]])
        assert results[0] is None and isinstance(results[1], Conflict)
        changes = [decode_change(p) for p in await trio.to_thread.run_sync(drain, listening, 3, origin)]
        assert [(c.id, c.version, c.command) for c in changes] == [("cmd_2", 1, two), ("cmd_1", 1, one),
                                                                   ("cmd_1", 2, sent)]
        with psycopg.connect(postgres_url) as db:
            rows = db.execute("SELECT id, version FROM commands ORDER BY id").fetchall()
            audit = db.execute("SELECT action, details::text FROM audit").fetchall()
        assert rows == [("cmd_1", 2), ("cmd_2", 1)]
        assert audit == [("command.create", '{"n":2}')]  # the conflicting group's record went with it
    finally:
        writer.close()


async def test_a_connection_in_another_encoding_announces_commands_without_their_row(
        postgres_url: str, listening: psycopg.Connection) -> None:
    writer = open_writer(postgres_url, origin=(origin := f"replica-e-{secrets.token_hex(4)}"))
    try:
        # As in a LATIN1 database: no character for the euro sign, nor for most of what users write.
        writer.connection.execute("SET client_encoding = 'LATIN1'")  # type: ignore[attr-defined]  # the PostgreSQL writer
        euro = attrs.evolve(command(1), parameters={"note": "€ 漢"})
        results = await trio.to_thread.run_sync(writer.commit, [[SaveDeployment(deployment("h1"))], [saved(euro)]])
        assert results == [None, None]
        [_, payload] = await trio.to_thread.run_sync(drain, listening, 2, origin)
        change = decode_change(payload)
        assert change == Change(origin=origin, kind="command", id="cmd_1", deployment_hash="h1", version=1)
        assert change.command is None  # read by the replica that hears of it
    finally:
        writer.close()


async def test_a_forgotten_agent_and_a_suspended_deployment_are_announced(
        postgres_url: str, listening: psycopg.Connection) -> None:
    writer = open_writer(postgres_url, origin=(origin := f"replica-b-{secrets.token_hex(4)}"))
    try:
        await trio.to_thread.run_sync(writer.commit, [[SaveDeployment(deployment("h1")), SaveAgent(agent("a1"))]])
        await trio.to_thread.run_sync(drain, listening, 2, origin)
        suspended = attrs.evolve(deployment("h1"), status=DeploymentStatus.SUSPENDED)
        await trio.to_thread.run_sync(writer.commit, [[ForgetAgents(("a1", "nobody"))], [SaveDeployment(suspended)]])
        payloads = await trio.to_thread.run_sync(drain, listening, 2, origin)
        assert [decode_change(p) for p in payloads] == [
            Change(origin=origin, kind="agent", id="a1", deployment_hash="h1", version=None),
            Change(origin=origin, kind="deployment", id="h1", deployment_hash="h1", version=None),
        ]
    finally:
        writer.close()


async def test_a_failed_commit_announces_nothing(postgres_url: str, listening: psycopg.Connection) -> None:
    writer = open_writer(postgres_url, origin=(origin := f"replica-c-{secrets.token_hex(4)}"))
    try:
        await trio.to_thread.run_sync(writer.commit, [[SaveDeployment(deployment("h1"))]])
        await trio.to_thread.run_sync(drain, listening, 1, origin)
        with psycopg.connect(postgres_url, autocommit=True) as other:
            # Another session holds the row: the writer's statement times out,
            # and the whole transaction with its notifications is rolled back.
            other.execute("BEGIN")
            other.execute("SELECT * FROM deployments FOR UPDATE")
            writer.connection.execute("SET statement_timeout = 200")  # type: ignore[attr-defined]  # the PostgreSQL writer
            with pytest.raises(psycopg.errors.QueryCanceled):
                await trio.to_thread.run_sync(writer.commit, [[saved(command(1))],
                                                               [SaveDeployment(deployment("h1"))]])
            other.execute("ROLLBACK")
        payloads = await trio.to_thread.run_sync(drain, listening, 0, origin)
        assert payloads == []
    finally:
        writer.close()


def test_change_payloads_round_trip_and_bad_ones_are_refused_by_name() -> None:
    change = Change(origin="r1", kind="command", id="cmd_1", deployment_hash="h", version=3)
    assert decode_change(encode_change(change)) == change
    assert decode_change(encode_change(change).encode()) == change
    ran = command(1).apply(CommandEvent.DELIVER, 102.0).apply(CommandEvent.COMPLETE, 103.0, result={"lines": ["é"]})
    carried = decode_change(encode_change(attrs.evolve(change, version=3), command_columns(ran)))
    assert carried.command == ran
    row = '[{"id":"cmd_1"},null,[],null]'
    for payload, message in [("nope", "not JSON"), ("[]", "not a JSON object"),
                             ('{"origin":1,"kind":"agent","id":"a","deployment_hash":"h"}', "origin"),
                             ('{"origin":"r","kind":"user","id":"a","deployment_hash":"h"}', "kind"),
                             ('{"origin":"r","kind":"agent","id":"a","deployment_hash":"h","version":true}',
                              "version"),
                             ('{"origin":"r","kind":"agent","id":"a","deployment_hash":"h","row":' + row + '}', "row"),
                             ('{"origin":"r","kind":"command","id":"cmd_1","deployment_hash":"h","version":1,'
                              '"row":[1,2]}', "row"),
                             ('{"origin":"r","kind":"command","id":"cmd_1","deployment_hash":"h","version":1,'
                              '"row":' + row + '}', "row is not a command"),
                             (encode_change(attrs.evolve(change, version=2), command_columns(ran)),
                              "not the command and version announced")]:
        with pytest.raises(ValueError, match=message):
            decode_change(payload)


def test_a_command_too_large_for_a_notification_is_announced_without_its_row() -> None:
    change = Change(origin="r1", kind="command", id="cmd_1", deployment_hash="h1", version=3)
    small = command(1).apply(CommandEvent.DELIVER, 102.0).apply(CommandEvent.COMPLETE, 103.0, result="x" * 7000)
    large = command(1).apply(CommandEvent.DELIVER, 102.0).apply(CommandEvent.COMPLETE, 103.0, result="x" * 8000)
    assert decode_change(encode_change(change, command_columns(small))).command == small
    payload = encode_change(change, command_columns(large))
    assert len(payload.encode()) < PAYLOAD_LIMIT
    assert decode_change(payload) == change
    assert decode_change(payload).command is None  # the listener reads it


# Values PostgreSQL refuses where SQLite would not


async def test_a_nul_character_in_a_text_column_is_rejected_with_its_group_alone(postgres_url: str) -> None:
    writer = open_writer(postgres_url)
    reader = StoreReader(postgres_url)
    try:
        results = await trio.to_thread.run_sync(writer.commit, [
            [SaveDeployment(deployment("bad-tenant", tenant="a\x00b"))],
            [SaveDeployment(deployment("good"))],
        ])
        assert [type(r) for r in results] == [Rejected, type(None)]
        assert [d.hash for d in await reader.deployments()] == ["good"]
    finally:
        reader.close()
        writer.close()


async def test_an_audit_record_with_a_nul_character_is_kept_with_a_replacement_character(postgres_url: str) -> None:
    writer = open_writer(postgres_url)
    reader = StoreReader(postgres_url)
    try:
        refusal = AuditEntry(at=1.0, tenant=None, actor="anonymous", action="auth.failure", resource_id="ab\x00c",
                             outcome="denied", user_agent="x\x00", details={"path": "/wait/ab\x00c"})
        assert await trio.to_thread.run_sync(writer.commit, [[refusal]]) == [None]
        [record], _ = await reader.audit(None, action=None, actor=None, since=None, until=None, limit=5, offset=0)
        assert record.entry == attrs.evolve(refusal, resource_id="ab\ufffdc", user_agent="x\ufffd")
    finally:
        reader.close()
        writer.close()


# Schema versions


def _version(url: str) -> int:
    with psycopg.connect(url) as db:
        row = db.execute("SELECT version FROM trioscope_schema").fetchone()
        assert row is not None
        return int(row[0])


def test_a_new_database_gets_the_current_version_and_replicas_may_open_it_at_once(postgres_url: str) -> None:
    from trioscope.store._postgres_migrations import SCHEMA_VERSION

    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            open_writer(postgres_url).close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _version(postgres_url) == SCHEMA_VERSION
    open_writer(postgres_url).close()  # nothing left to do
    assert _version(postgres_url) == SCHEMA_VERSION


def test_a_database_of_a_later_version_is_refused_unchanged(postgres_url: str) -> None:
    open_writer(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("UPDATE trioscope_schema SET version = 999")
        db.execute("DROP INDEX audit_at")  # as a later version might
    with pytest.raises(NewerSchema, match="schema version 999, newer than this trioscope knows"):
        open_writer(postgres_url)
    with pytest.raises(NewerSchema):
        StoreReader(postgres_url)
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT to_regclass('audit_at')").fetchone() == (None,)
    assert _version(postgres_url) == 999


# Connections


def test_an_unreachable_database_is_unavailable_without_its_password(postgres: str) -> None:
    url = "postgresql://postgres:s3cret-pw@127.0.0.1:1/test"
    with pytest.raises(Unavailable) as raised:
        open_writer(url)
    assert "127.0.0.1:1/test" in str(raised.value) and "s3cret-pw" not in str(raised.value)
    with pytest.raises(Unavailable):
        StoreReader(url)
    with pytest.raises(Unavailable, match="does not exist"):
        open_writer(postgres.rsplit("/", 1)[0] + "/no_such_database_here")


async def test_the_writer_reconnects_after_losing_its_connection(postgres_url: str) -> None:
    writer = open_writer(postgres_url)
    reader = StoreReader(postgres_url)
    try:
        await trio.to_thread.run_sync(writer.commit, [[SaveDeployment(deployment("h1"))]])
        pid = writer.connection.info.backend_pid  # type: ignore[attr-defined]  # the PostgreSQL writer
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError):  # the store actor fails, nothing acknowledged
            await trio.to_thread.run_sync(writer.commit, [[SaveDeployment(deployment("lost"))]])
        assert await trio.to_thread.run_sync(writer.commit, [[SaveDeployment(deployment("h2"))]]) == [None]
        assert sorted(d.hash for d in await reader.deployments()) == ["h1", "h2"]
    finally:
        reader.close()
        writer.close()


async def test_a_read_on_a_connection_lost_since_its_last_use_is_made_again_on_another(postgres_url: str) -> None:
    writer = open_writer(postgres_url)
    reader = PostgresReader(postgres_url, pool_size=1)  # one connection: the next read gets the lost one
    try:
        await trio.to_thread.run_sync(writer.commit, [[SaveDeployment(deployment("h1")), saved(command(1))]])
        with reader.pool.connection() as db:
            pid = db.info.backend_pid
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert reader.commands(["cmd_1"]) == [command(1)]
        with reader.pool.connection() as db:
            assert db.info.backend_pid != pid
            pid = db.info.backend_pid
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert [c.command.id for c in reader.command_summaries("h1", status=None, since=None, until=None, limit=10,
                                                      offset=0, max_bytes=10**6, error_bytes=100)[0]] == ["cmd_1"]
    finally:
        reader.close()
        writer.close()


def test_a_replicas_own_payloads_are_known_by_their_prefix_and_no_others_are() -> None:
    ran = command(1).apply(CommandEvent.DELIVER, 102.0)
    for origin in ("r1", 'a "quoted" \\ origin'):
        change = Change(origin=origin, kind="command", id="cmd_1", deployment_hash="h1", version=2)
        for payload in (encode_change(change), encode_change(change, command_columns(ran))):
            assert payload.encode().startswith(origin_prefix(origin))
            assert not payload.encode().startswith(origin_prefix(origin[:-1]))  # another replica's
            assert not payload.encode().startswith(origin_prefix(origin + "x"))


def test_payloads_stay_far_below_the_notify_limit() -> None:
    change = Change(origin="x" * 64, kind="command", id="cmd_" + "x" * 200, deployment_hash="h" * 200, version=10**9)
    assert len(orjson.dumps(encode_change(change))) < 8000


# Quotas every replica's writer checks


def _create(c: Command, quota: OpenCommandsQuota, size: int = 10) -> list[Write]:
    return [SaveCommand(c, None, parameter_bytes=size, quota=quota),
            AuditEntry(at=1.0, tenant="acme", actor="user:u1", action="command.create")]


async def test_a_new_commands_quota_counts_every_replicas_open_commands(postgres_url: str) -> None:
    hash_ = f"q-{secrets.token_hex(4)}"
    quota = OpenCommandsQuota(max_open=3, max_parameter_bytes=100)
    a, b = open_writer(postgres_url, origin="replica-a"), open_writer(postgres_url, origin="replica-b")
    try:
        await trio.to_thread.run_sync(a.commit, [[SaveDeployment(deployment(hash_))], [
            SaveDeployment(deployment(f"{hash_}-other"))]])
        mine = [command(i, deployment_hash=hash_) for i in range(5)]
        assert await trio.to_thread.run_sync(a.commit, [_create(mine[0], quota), _create(mine[1], quota)]) == [
            None, None]
        # B's own count would be 0: the store's is 2, so one more fits and then none.
        results = await trio.to_thread.run_sync(b.commit, [_create(mine[2], quota)])
        assert results == [None]
        other = command(9, deployment_hash=f"{hash_}-other")
        results = await trio.to_thread.run_sync(b.commit, [_create(mine[3], quota), _create(other, quota)])
        assert isinstance(results[0], OverQuota) and results[1] is None  # the other deployment's is its own
        assert (results[0].in_use, results[0].bytes_in_use) == (3, 30)
        # A finished command no longer counts; bytes are a limit of their own.
        done = mine[0].apply(CommandEvent.CANCEL, 200.0)
        assert await trio.to_thread.run_sync(a.commit, [[SaveCommand(done, len(mine[0].history))]]) == [None]
        results = await trio.to_thread.run_sync(b.commit, [_create(mine[3], quota, size=81)])
        assert isinstance(results[0], OverQuota) and results[0].bytes_in_use == 20
        assert await trio.to_thread.run_sync(b.commit, [_create(mine[3], quota, size=80)]) == [None]
        reader = StoreReader(postgres_url)
        try:
            assert sorted(c.id for c in await reader.open_commands(hash_)) == ["cmd_1", "cmd_2", "cmd_3"]
        finally:
            reader.close()
    finally:
        a.close()
        b.close()


async def test_a_create_waits_for_another_replicas_create_of_the_deployment_and_counts_it(postgres_url: str) -> None:
    """Replica A's transaction, holding the deployment's quota lock, has written
    the last open command the quota allows and not committed yet: B's create
    waits for it and is refused, not counted on what A's commit will add."""
    from trioscope.store._postgres import QUOTA_LOCK, _quota_key  # the lock replicas take in turn

    hash_ = f"q-{secrets.token_hex(4)}"
    quota = OpenCommandsQuota(max_open=1, max_parameter_bytes=100)
    b = open_writer(postgres_url, origin="replica-b")
    try:
        await trio.to_thread.run_sync(b.commit, [[SaveDeployment(deployment(hash_))]])
        with psycopg.connect(postgres_url) as a:
            a.execute(QUOTA_LOCK, (_quota_key("open commands", hash_),))
            first = command(1, deployment_hash=hash_)
            a.execute("INSERT INTO commands (id, deployment_hash, tenant, sequence, status, created_at, version,"
                      " document, error, history, result, parameters_bytes)"
                      " VALUES (%s, %s, 'acme', 1, 'queued', 1.0, 1, %s, %s, %s, %s, 10)",
                      (first.id, hash_, *command_columns(first)))
            async with trio.open_nursery() as nursery:
                results: list[list[BaseException | None]] = []

                async def create() -> None:
                    results.append(await trio.to_thread.run_sync(
                        b.commit, [_create(command(2, deployment_hash=hash_), quota)]))

                nursery.start_soon(create)
                with psycopg.connect(postgres_url, autocommit=True) as watcher:
                    await _wait_for_lock_wait(watcher)
                assert results == []  # waiting for A's transaction
                a.commit()
        assert isinstance(results[0][0], OverQuota) and results[0][0].in_use == 1
    finally:
        b.close()


async def _wait_for_lock_wait(db: psycopg.Connection) -> None:
    """Until some connection of this database waits for an advisory lock (10 s at most)."""
    with trio.fail_after(10):
        while not db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                             " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                             ).fetchone()[0]:
            await trio.sleep(0.02)


async def test_a_new_deployment_counts_every_replicas_deployments_of_its_tenant(postgres_url: str) -> None:
    tenant = f"t-{secrets.token_hex(4)}"
    a, b = open_writer(postgres_url, origin="replica-a"), open_writer(postgres_url, origin="replica-b")
    try:
        new = [SaveDeployment(deployment(f"{tenant}-{i}", tenant=tenant), max_of_tenant=2) for i in range(3)]
        assert await trio.to_thread.run_sync(a.commit, [[new[0]]]) == [None]
        assert await trio.to_thread.run_sync(b.commit, [[new[1]]]) == [None]
        results = await trio.to_thread.run_sync(a.commit, [[new[2]], [SaveDeployment(deployment(f"{tenant}-x"))]])
        assert isinstance(results[0], OverQuota) and results[0].in_use == 2 and results[1] is None
    finally:
        a.close()
        b.close()


async def test_the_open_commands_of_a_version_2_database_get_their_parameters_sizes_as_the_server_counts_them(
        postgres_url: str) -> None:
    """At first their documents' sizes stood for them: ten times too many for
    ``{}``, a twentieth of a list of small objects' (a reviewer's upgrade)."""
    from trioscope.domain.commands import parameters_bytes

    writer = open_writer(postgres_url)
    empty = attrs.evolve(command(1), parameters={})
    listed = attrs.evolve(command(2), parameters={"l": [{}] * 800})
    done = command(3).apply(CommandEvent.CANCEL, 200.0)
    try:
        await trio.to_thread.run_sync(writer.commit, [[SaveDeployment(deployment("h1"))], [saved(empty)],
                                                      [saved(listed)], [saved(done)]])
    finally:
        writer.close()
    with psycopg.connect(postgres_url, autocommit=True) as db:  # as version 2 had it
        as_version_3(db)
        db.execute("DROP INDEX commands_open")
        db.execute("ALTER TABLE commands DROP COLUMN parameters_bytes")
        db.execute("UPDATE trioscope_schema SET version = 2")
    open_writer(postgres_url).close()
    with psycopg.connect(postgres_url) as db:
        sizes = dict(db.execute("SELECT id, parameters_bytes FROM commands").fetchall())
    assert sizes == {"cmd_1": parameters_bytes({}), "cmd_2": parameters_bytes({"l": [{}] * 800}), "cmd_3": 0}


def as_version_5(db: psycopg.Connection) -> None:
    """Take what version 6 added out of a database (its version number is the caller's)."""
    db.execute("DROP TABLE app_statuses")


def as_version_4(db: psycopg.Connection) -> None:
    """Take what versions 5 and 6 added out of a database (its version number is the caller's)."""
    as_version_5(db)
    db.execute("DROP TABLE idempotency_keys")  # and its triggers
    for name in ("idempotency_keys_usage_inserted", "idempotency_keys_usage_updated",
                 "idempotency_keys_usage_deleted"):
        db.execute(f"DROP FUNCTION {name}()")


def as_version_3(db: psycopg.Connection) -> None:
    """Take what versions 4 to 6 added out of a database (its version number is the caller's)."""
    as_version_4(db)
    db.execute("DROP TABLE tenant_usage")
    for name in ("commands_usage_inserted", "commands_usage_updated", "commands_usage_deleted"):
        db.execute(f"DROP FUNCTION {name}() CASCADE")  # and its trigger
