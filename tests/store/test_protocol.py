"""Every operation of the store protocol (``StoreWriter`` writes and prunes,
``StoreReader`` reads), written against the protocol alone so each backend the
``store`` fixture opens must pass them: deployments and their enrollment,
agents and their tokens, commands with their history and results, audit
records, and what retention deletes and keeps."""

from __future__ import annotations

from typing import Any

import attrs
import orjson
import pytest

from trioscope.domain.commands import Command, CommandEvent, CommandStatus, Priority, new_command
from trioscope.domain.deployments import AgentRecord, AgentStatus, Deployment, DeploymentStatus
from trioscope.store import (
    AuditEntry,
    Conflict,
    ForgetAgents,
    Rejected,
    SaveAgent,
    SaveCommand,
    SaveDeployment,
    StoredCommand,
)

from .conftest import Store

UNENCODABLE: Any = []
for _ in range(300):  # nested deeper than JSON encoders go
    UNENCODABLE = [UNENCODABLE]


def deployment(name: str, *, tenant: str = "acme", created_at: float = 1.0, **changes: Any) -> Deployment:
    return Deployment(**{"hash": name, "tenant": tenant, "user_id": "u1", "created_at": created_at,
                         "enrollment_hash": f"enroll-{name}", **changes})


def agent(name: str, *, deployment_hash: str = "h1", **changes: Any) -> AgentRecord:
    return AgentRecord(**{"id": name, "deployment_hash": deployment_hash, "token_hash": f"token-{name}",
                          "status": AgentStatus.ACTIVE, "created_at": 2.0, **changes})


def command(i: int, *, deployment_hash: str = "h1", now: float | None = None, confirm: bool = False) -> Command:
    at = float(100 + i) if now is None else now
    return new_command(command_id=f"cmd_{i}", deployment_hash=deployment_hash, tenant="acme", type="logs",
                       parameters={"tail": i, "names": ["é", None]}, priority=Priority.NORMAL, created_by="u1",
                       now=at, schedule_at=None, timeout_seconds=60, requires_confirmation=confirm,
                       sequence=1000 + i)


def saved(c: Command, previous: Command | None = None) -> SaveCommand:
    """``c`` inserted, or changed from ``previous`` (compare-and-set)."""
    return SaveCommand(c, None if previous is None else len(previous.history))


def completed(c: Command, at: float, result: Any) -> Command:
    return c.apply(CommandEvent.DELIVER, at).apply(CommandEvent.COMPLETE, at + 0.1, {"agent_id": "a"}, result=result)


def failed(c: Command, at: float, error: Any) -> Command:
    return c.apply(CommandEvent.DELIVER, at).apply(CommandEvent.FAIL, at + 0.1, {"error": error}, error=error)


def by_id(records: list[Any]) -> dict[str, Any]:
    """Backends list deployments and agents in no promised order."""
    return {r.id if hasattr(r, "id") else r.hash: r for r in records}


# Deployments and enrollment


async def test_deployments_are_created_and_read_back_whole(store: Store) -> None:
    made = [deployment("h1", metadata={"env": "prod", "tags": ["a", 1, 2.5, None, True], "nested": {"é": {}}}),
            deployment("h2", tenant="other", created_at=2.5, enrollment_hash=None, status=DeploymentStatus.SUSPENDED)]
    await store.write(*(SaveDeployment(d) for d in made))
    assert by_id(await store.reader.deployments()) == by_id(made)


async def test_an_enrollment_token_is_rotated_spent_and_a_deployment_suspended_in_place(store: Store) -> None:
    first = deployment("h1", metadata={"env": "prod"})
    await store.write(SaveDeployment(first), SaveDeployment(deployment("h2")))
    rotated = attrs.evolve(first, enrollment_hash="enroll-rotated")
    await store.write(SaveDeployment(rotated))
    assert by_id(await store.reader.deployments())["h1"] == rotated
    spent = attrs.evolve(rotated, enrollment_hash=None, status=DeploymentStatus.SUSPENDED, metadata={"env": "dev"})
    await store.write(SaveDeployment(spent))
    found = by_id(await store.reader.deployments())
    assert found == {"h1": spent, "h2": deployment("h2")}


async def test_an_unencodable_deployment_is_rejected_alone(store: Store) -> None:
    results = await store.commit([SaveDeployment(deployment("bad", metadata={"x": UNENCODABLE}))],
                                 [SaveDeployment(deployment("good"))])
    assert isinstance(results[0], Rejected) and results[1] is None
    assert list(by_id(await store.reader.deployments())) == ["good"]


async def test_any_json_value_is_kept_as_written_nul_characters_and_key_order_included(store: Store) -> None:
    odd = {"z": "a\x00b", "a": ["\x00", {"é\x00": 1e300, "b": -0.0}], "m": 2**62}
    d = deployment("h1", metadata=odd)
    a = agent("a1", version="0.2\x001", system_info=odd)
    record = AuditEntry(at=1.0, tenant="acme", actor="user:u1", action="deployment.create", details=odd)
    await store.write(SaveDeployment(d), SaveAgent(a), record)
    [found] = await store.reader.deployments()
    assert found == d and list(found.metadata) == ["z", "a", "m"]
    assert await store.reader.agents() == [a]
    records, _ = await store.reader.audit("acme", action=None, actor=None, since=None, until=None, limit=1, offset=0)
    assert records[0].entry == record and orjson.dumps(records[0].entry.details) == orjson.dumps(odd)


# Agents and their tokens


async def test_agents_are_saved_retired_and_forgotten(store: Store) -> None:
    live = agent("a1", capabilities=("docker", "logs"), version="1.2", system_info={"os": "linux", "cpus": 4})
    other = agent("a2")
    await store.write(SaveDeployment(deployment("h1")), SaveAgent(live), SaveAgent(other), SaveAgent(agent("a3")))
    assert by_id(await store.reader.agents()) == {"a1": live, "a2": other, "a3": agent("a3")}

    retired = attrs.evolve(live, status=AgentStatus.DECOMMISSIONED, decommissioned_at=9.0, system_info={})
    await store.write(SaveAgent(retired))
    assert by_id(await store.reader.agents())["a1"] == retired

    await store.write(ForgetAgents(("a1", "a3", "never-saved")))
    assert by_id(await store.reader.agents()) == {"a2": other}


async def test_an_agent_token_is_rotated_and_one_token_is_never_two_agents(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")), SaveAgent(agent("a1")))
    rotated = attrs.evolve(agent("a1"), token_hash="token-new")
    await store.write(SaveAgent(rotated))
    assert by_id(await store.reader.agents()) == {"a1": rotated}

    taken = agent("a2", token_hash="token-new")
    entry = AuditEntry(at=5.0, tenant="acme", actor="agent:a2", action="agent.register")
    [error] = await store.commit([SaveAgent(taken), entry])
    assert isinstance(error, Rejected)  # and nothing of its group was written
    assert by_id(await store.reader.agents()) == {"a1": rotated}
    assert await store.reader.audit("acme", action=None, actor=None, since=None, until=None, limit=10,
                                    offset=0) == ([], 0)
    # The old token is free again.
    await store.write(SaveAgent(agent("a2", token_hash="token-a1")))
    assert set(by_id(await store.reader.agents())) == {"a1", "a2"}


async def test_an_agent_or_command_of_no_deployment_is_rejected(store: Store) -> None:
    results = await store.commit([SaveAgent(agent("a1", deployment_hash="missing"))],
                                 [SaveCommand(command(1, deployment_hash="missing"), None)])
    assert [type(r) for r in results] == [Rejected, Rejected]
    assert await store.reader.agents() == []
    assert await store.reader.command("cmd_1") is None


# Commands and their history


async def test_a_command_lives_through_its_transitions_compare_and_set(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")), SaveDeployment(deployment("h2")))
    queued = command(1)
    await store.write(saved(queued))
    assert await store.reader.command("cmd_1") == queued
    assert await store.reader.open_commands("h1") == [queued]
    assert await store.reader.deployments_with_open_commands() == ["h1"]

    sent = queued.apply(CommandEvent.DELIVER, 101.0)
    executing = sent.apply(CommandEvent.PROGRESS, 102.0, {"percent": 50})
    await store.write(saved(sent, queued))
    await store.write(saved(executing, sent))
    assert await store.reader.open_commands("h1") == [executing]

    done = executing.apply(CommandEvent.COMPLETE, 103.0, {"agent_id": "a1"}, result={"log": ["line"] * 3})
    await store.write(saved(done, executing))
    found = await store.reader.command("cmd_1")
    assert found == done and found.result == {"log": ["line"] * 3}
    assert [h.status for h in found.history] == [CommandStatus.QUEUED, CommandStatus.SENT, CommandStatus.EXECUTING,
                                                 CommandStatus.COMPLETED]
    assert found.history[2].detail == {"percent": 50}
    assert await store.reader.open_commands("h1") == []
    assert await store.reader.deployments_with_open_commands() == []
    assert await store.reader.command("cmd_missing") is None


async def test_many_deployments_and_agents_are_read_at_once_and_missing_ones_left_out(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")), SaveDeployment(deployment("h2")))
    await store.write(SaveAgent(agent("a1")), SaveAgent(agent("a2", deployment_hash="h2")))
    assert await store.reader.deployments_named(["h2", "nope", "h1"]) == {"h1": deployment("h1"),
                                                                           "h2": deployment("h2")}
    assert await store.reader.agents_named(["a2", "nope"]) == {"a2": agent("a2", deployment_hash="h2")}
    assert await store.reader.deployments_named([]) == {} and await store.reader.agents_named([]) == {}


async def test_many_commands_are_read_whole_at_once_and_missing_ones_left_out(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")), SaveDeployment(deployment("h2")))
    done = completed(command(1), 102.0, {"log": ["line"] * 3})
    other = command(2, deployment_hash="h2")
    await store.write(saved(done), saved(other))
    assert await store.reader.commands(["cmd_1", "cmd_missing", "cmd_2", "cmd_1"]) == {"cmd_1": done,
                                                                                        "cmd_2": other}
    assert await store.reader.commands([]) == {}


async def test_a_stale_change_is_a_conflict_and_its_whole_group_is_not_written(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")))
    queued = command(1)
    await store.write(saved(queued), saved(command(2)))
    cancelled = queued.apply(CommandEvent.CANCEL, 101.0, {"by": "u1"})
    await store.write(saved(cancelled, queued))

    sent = queued.apply(CommandEvent.DELIVER, 101.5)  # made from the state before the cancel
    entry = AuditEntry(at=101.5, tenant="acme", actor="user:u1", action="command.deliver")
    second = command(2).apply(CommandEvent.CANCEL, 102.0)
    results = await store.commit([saved(sent, queued), entry], [saved(second, command(2))],
                                 [saved(command(1))], [saved(command(3), command(3))])
    assert isinstance(results[0], Conflict) and results[0].command_id == "cmd_1"
    assert results[1] is None
    assert isinstance(results[2], Rejected)  # the id is taken
    assert isinstance(results[3], Conflict)  # no such command to change
    assert await store.reader.command("cmd_1") == cancelled
    assert await store.reader.command("cmd_2") == second
    assert await store.reader.command("cmd_3") is None
    assert await store.reader.audit("acme", action=None, actor=None, since=None, until=None, limit=10,
                                    offset=0) == ([], 0)


async def test_open_commands_are_per_deployment_in_sequence_order(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")), SaveDeployment(deployment("h2")))
    made = [command(i, deployment_hash="h1" if i % 3 else "h2", confirm=i == 4) for i in (5, 1, 4, 3, 2, 6)]
    done = completed(command(7), 110.0, None)
    await store.write(*(saved(c) for c in made), saved(done))
    assert await store.reader.open_commands("h1") == sorted(
        [c for c in made if c.deployment_hash == "h1"], key=lambda c: c.sequence)
    assert [c.id for c in await store.reader.open_commands("h2")] == ["cmd_3", "cmd_6"]
    assert sorted(await store.reader.deployments_with_open_commands()) == ["h1", "h2"]
    assert await store.reader.open_commands("nobody") == []


async def test_pages_of_commands_filter_by_status_and_time_newest_first(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")), SaveDeployment(deployment("h2")))
    made = []
    for i in range(30):
        c = command(i, deployment_hash="h2" if i % 10 == 9 else "h1", confirm=i % 4 == 0)
        made.append(completed(c, 100.0 + i, {"n": i}) if i % 4 == 1 else c)
    await store.write(*(saved(c) for c in made))

    async def pages(**query: Any) -> tuple[list[str], set[int]]:
        ids: list[str] = []
        totals: set[int] = set()
        for offset in range(0, 40, 4):
            page, total = await store.reader.command_summaries(
                "h1", **{"status": None, "since": None, "until": None, **query}, limit=4, offset=offset,
                max_bytes=2**20, error_bytes=1000)
            ids += [s.command.id for s in page]
            totals.add(total)
        return ids, totals

    mine = [c for c in reversed(made) if c.deployment_hash == "h1"]
    cases: list[tuple[dict[str, Any], list[Command]]] = [
        ({}, mine),
        ({"status": "completed"}, [c for c in mine if c.status is CommandStatus.COMPLETED]),
        ({"status": "awaiting_confirmation"}, [c for c in mine if c.status is CommandStatus.AWAITING_CONFIRMATION]),
        ({"status": "expired"}, []),
        ({"since": 110.0}, [c for c in mine if c.created_at >= 110.0]),  # since is inclusive
        ({"until": 110.0}, [c for c in mine if c.created_at < 110.0]),  # until is not
        ({"since": 105.0, "until": 120.0, "status": "queued"},
         [c for c in mine if 105.0 <= c.created_at < 120.0 and c.status is CommandStatus.QUEUED]),
    ]
    for query, expected in cases:
        assert await pages(**query) == ([c.id for c in expected], {len(expected)}), query
    page, total = await store.reader.command_summaries("h1", status=None, since=None, until=None, limit=5,
                                                       offset=100, max_bytes=2**20, error_bytes=0)
    assert page == [] and total == len(mine)


async def test_summaries_carry_the_small_fields_and_sizes_of_the_rest(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")))
    result = {"log": "r" * 3000}
    ok = completed(command(1), 101.0, result)
    bad = failed(command(2), 102.0, {"why": "no such container"})
    await store.write(saved(ok), saved(bad))
    page, _ = await store.reader.command_summaries("h1", status=None, since=None, until=None, limit=10, offset=0,
                                                   max_bytes=2**20, error_bytes=len(orjson.dumps(bad.error)))
    summary_bad, summary_ok = page
    assert summary_ok == StoredCommand(
        command=attrs.evolve(ok, result=None, history=(attrs.evolve(ok.history[-1], detail=None),)),
        result_bytes=len(orjson.dumps(result)), error_bytes=len(b"null"), result_included=False,
        error_included=True, history_included=False)
    assert summary_bad.command.error == bad.error and summary_bad.error_included  # exactly error_bytes: kept
    smaller, _ = await store.reader.command_summaries("h1", status=None, since=None, until=None, limit=10, offset=0,
                                                      max_bytes=2**20, error_bytes=len(orjson.dumps(bad.error)) - 1)
    assert smaller[0].command.error is None and not smaller[0].error_included
    assert smaller[0].error_bytes == len(orjson.dumps(bad.error))


async def test_a_page_stops_at_its_byte_budget_after_at_least_one_command(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")))
    await store.write(*(saved(command(i)) for i in range(10)))
    one, _ = await store.reader.command_summaries("h1", status=None, since=None, until=None, limit=10, offset=0,
                                                  max_bytes=1, error_bytes=0)
    assert [s.command.id for s in one] == ["cmd_9"]
    whole, _ = await store.reader.command_summaries("h1", status=None, since=None, until=None, limit=10, offset=0,
                                                    max_bytes=2**20, error_bytes=0)
    some, total = await store.reader.command_summaries("h1", status=None, since=None, until=None, limit=10,
                                                       offset=0, max_bytes=1500, error_bytes=0)
    assert 1 < len(some) < 10 and total == 10
    assert [s.command.id for s in some] == [s.command.id for s in whole][:len(some)]


async def test_a_command_read_caps_its_result_and_error_and_parts_read_them_exactly(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")))
    ok = completed(command(1), 101.0, {"log": "é" * 5000})
    bad = failed(command(2), 102.0, ["e" * 100])
    await store.write(saved(ok), saved(bad))
    result = orjson.dumps(ok.result)

    whole = await store.reader.stored_command("cmd_1", inline_bytes=len(result))  # exactly the cap: included
    assert whole is not None
    # The result as stored, to be written out again without being parsed (an orjson.Fragment).
    assert orjson.dumps(whole.command.result) == result
    assert attrs.evolve(whole, command=attrs.evolve(whole.command, result=ok.result)) == StoredCommand(
        command=ok, result_bytes=len(result), error_bytes=4, result_included=True, error_included=True,
        history_included=True)
    capped = await store.reader.stored_command("cmd_1", inline_bytes=len(result) - 1)
    assert capped is not None and capped.command == attrs.evolve(ok, result=None) and not capped.result_included
    assert capped.command.history == ok.history and capped.result_bytes == len(result)
    capped_error = await store.reader.stored_command("cmd_2", inline_bytes=10)
    assert capped_error is not None and capped_error.command.error is None and not capped_error.error_included
    assert capped_error.error_bytes == len(orjson.dumps(bad.error))
    assert await store.reader.stored_command("cmd_missing", inline_bytes=10) is None

    parts = [await store.reader.command_part("cmd_1", "result", offset, 999) for offset in range(0, len(result), 999)]
    assert b"".join(p.data for p in parts if p is not None) == result
    assert {(p.deployment_hash, p.total) for p in parts if p is not None} == {("h1", len(result))}
    end = await store.reader.command_part("cmd_1", "result", len(result), 10)
    assert end is not None and end.data == b"" and end.total == len(result)
    empty = await store.reader.command_part("cmd_1", "result", 0, 0)
    assert empty is not None and empty.data == b""
    error = await store.reader.command_part("cmd_2", "error", 2, 20)
    assert error is not None and error.data == orjson.dumps(bad.error)[2:22]
    assert await store.reader.command_part("cmd_missing", "error", 0, 10) is None


async def test_an_unencodable_result_is_rejected_and_the_command_kept_as_it_was(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")))
    sent = command(1).apply(CommandEvent.DELIVER, 101.0)
    await store.write(saved(command(1)), saved(sent, command(1)))
    done = sent.apply(CommandEvent.COMPLETE, 102.0, result=UNENCODABLE)
    [error] = await store.commit([saved(done, sent)])
    assert isinstance(error, Rejected)
    assert await store.reader.command("cmd_1") == sent


# Audit


def entry(i: int, **fields: Any) -> AuditEntry:
    values: dict[str, Any] = {"at": 100.0 + i, "tenant": "acme", "actor": "user:u1", "action": "command.create",
                              **fields}
    return AuditEntry(**values)


async def test_audit_records_are_appended_and_read_back_newest_first(store: Store) -> None:
    full = entry(0, resource_type="command", resource_id="cmd_1", outcome="denied", address="10.0.0.1",
                 user_agent="curl/8", details={"type": "logs", "n": [1, None, "é"]})
    bare = entry(1)
    await store.write(full)
    await store.write(bare)
    records, total = await store.reader.audit("acme", action=None, actor=None, since=None, until=None, limit=10,
                                              offset=0)
    assert total == 2
    assert [r.entry for r in records] == [bare, full]
    assert records[0].entry.outcome == "ok" and records[0].entry.details == {}
    assert records[0].id > records[1].id


async def test_audit_queries_filter_by_tenant_action_actor_and_time_and_page(store: Store) -> None:
    entries = [entry(i, tenant=[None, "acme", "other"][i % 3], actor=f"user:u{i % 2}",
                     action="auth.failure" if i % 5 == 0 else "command.create") for i in range(40)]
    await store.write(*entries)
    newest_first = list(reversed(entries))

    async def read_all(tenant: str | None, **query: Any) -> tuple[list[float], set[int]]:
        times: list[float] = []
        totals: set[int] = set()
        for offset in range(0, 50, 7):
            records, total = await store.reader.audit(
                tenant, **{"action": None, "actor": None, "since": None, "until": None, **query}, limit=7,
                offset=offset)
            times += [r.entry.at for r in records]
            totals.add(total)
        return times, totals

    cases: list[tuple[str | None, dict[str, Any], list[AuditEntry]]] = [
        ("acme", {}, [e for e in newest_first if e.tenant == "acme"]),
        (None, {}, [e for e in newest_first if e.tenant is None]),  # in no tenant's log
        (None, {"every_tenant": True}, newest_first),
        ("acme", {"action": "auth.failure"}, [e for e in newest_first if e.tenant == "acme"
                                               and e.action == "auth.failure"]),
        ("other", {"actor": "user:u1"}, [e for e in newest_first if e.tenant == "other" and e.actor == "user:u1"]),
        ("acme", {"since": 110.0, "until": 130.0},  # since inclusive, until not
         [e for e in newest_first if e.tenant == "acme" and 110.0 <= e.at < 130.0]),
        (None, {"every_tenant": True, "action": "auth.failure", "actor": "user:u0", "since": 120.0},
         [e for e in newest_first if e.action == "auth.failure" and e.actor == "user:u0" and e.at >= 120.0]),
        ("nobody", {}, []),
    ]
    for tenant, query, expected in cases:
        assert await read_all(tenant, **query) == ([e.at for e in expected], {len(expected)}), (tenant, query)


async def test_an_unencodable_audit_record_is_rejected_alone(store: Store) -> None:
    results = await store.commit([entry(0, details={"x": UNENCODABLE})], [entry(1)])
    assert isinstance(results[0], Rejected) and results[1] is None
    records, total = await store.reader.audit("acme", action=None, actor=None, since=None, until=None, limit=10,
                                              offset=0)
    assert total == 1 and records[0].entry == entry(1)


# Retention


async def test_pruning_deletes_finished_commands_and_audit_records_before_the_cutoff_only(store: Store) -> None:
    await store.write(SaveDeployment(deployment("h1")), SaveAgent(agent("a1")))
    old_open = [command(i, now=float(i)) for i in range(3)]  # queued, and awaiting confirmation
    old_open.append(command(3, now=3.0, confirm=True))
    old_open.append(command(4, now=4.0).apply(CommandEvent.DELIVER, 4.5))
    old_done = [completed(command(10 + i, now=10.0 + i), 50.0, {"n": i}) for i in range(7)]
    old_done.append(command(20, now=20.0).apply(CommandEvent.CANCEL, 21.0))
    at_cutoff = completed(command(30, now=100.0), 100.5, None)
    young = [failed(command(40 + i, now=150.0 + i), 151.0 + i, "boom") for i in range(3)]
    await store.write(*(saved(c) for c in [*old_open, *old_done, at_cutoff, *young]))
    await store.write(*(entry(i, at=float(i)) for i in range(0, 200, 10)))  # 10 before 100.0, 10 from it

    assert await store.prune(100.0, 3) == (3, 3)  # batches of at most 3 of each
    while await store.prune(100.0, 3) != (0, 0):
        pass

    for c in [*old_open, at_cutoff, *young]:  # open ones whatever their age; finished ones made from the cutoff
        assert await store.reader.command(c.id) == c
    for c in old_done:
        assert await store.reader.command(c.id) is None
    page, total = await store.reader.command_summaries("h1", status=None, since=None, until=None, limit=50,
                                                       offset=0, max_bytes=2**20, error_bytes=0)
    assert total == len(old_open) + 1 + len(young) == len(page)
    assert await store.reader.open_commands("h1") == old_open
    records, total = await store.reader.audit("acme", action=None, actor=None, since=None, until=None, limit=50,
                                              offset=0)
    assert total == 10 and min(r.entry.at for r in records) == 100.0
    # Nothing else is touched: the deployment and its agent stay.
    assert list(by_id(await store.reader.deployments())) == ["h1"]
    assert list(by_id(await store.reader.agents())) == ["a1"]


async def test_a_command_is_kept_for_the_retention_after_it_finished_not_after_it_was_made(store: Store) -> None:
    """Created long ago (scheduled far ahead, or awaiting confirmation), finished
    now: its result is kept as long as any other's."""
    await store.write(SaveDeployment(deployment("h1")))
    late = completed(command(1, now=10.0), 150.0, {"log": "the result"})
    early = completed(command(2, now=20.0), 50.0, None)
    await store.write(saved(late), saved(early))
    while await store.prune(100.0, 10) != (0, 0):
        pass
    assert await store.reader.command("cmd_1") == late
    assert await store.reader.command("cmd_2") is None


async def test_pruning_an_empty_store_deletes_nothing(store: Store) -> None:
    assert await store.prune(1e12, 100) == (0, 0)


@pytest.mark.parametrize("batch", [1, 1000])
async def test_pruning_reports_how_many_it_deleted(store: Store, batch: int) -> None:
    await store.write(SaveDeployment(deployment("h1")))
    await store.write(*(saved(completed(command(i, now=float(i)), float(i), None)) for i in range(4)))
    await store.write(*(entry(i, at=float(i)) for i in range(2)))
    deleted = (0, 0)
    while (step := await store.prune(10.0, batch)) != (0, 0):
        assert max(step) <= batch
        deleted = (deleted[0] + step[0], deleted[1] + step[1])
    assert deleted == (4, 2)


async def test_the_health_check_read_answers(store: Store) -> None:
    await store.reader.check()
