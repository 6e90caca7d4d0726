"""A command's history stays bounded whatever an agent reports: runs of
progress reports are one entry, and past ``HISTORY_FIRST + HISTORY_LAST``
entries the middle ones are left out with a count; ``len(history)`` still
counts every change (the stores' version). And a deployment's queue counts the
bytes of its open commands' parameters."""

from __future__ import annotations

import sys

import orjson
from trioscope.domain.commands import (
    HISTORY_FIRST,
    HISTORY_LAST,
    Command,
    CommandEvent,
    CommandStatus,
    DeploymentQueue,
    History,
    Priority,
    StatusChange,
    command_document,
    command_event,
    command_from_document,
    new_command,
    parameters_bytes,
)

S, E = CommandStatus, CommandEvent
T0 = 1_760_000_000.0


def make(command_id: str = "c1", parameters: dict[str, object] | None = None) -> Command:
    return new_command(command_id=command_id, deployment_hash="dep", tenant="acme", type="restart",
                       parameters=parameters or {}, priority=Priority.NORMAL, created_by="alice", now=T0,
                       schedule_at=None, timeout_seconds=60, requires_confirmation=False, sequence=1)


def progress(command: Command, at: float, percent: int) -> Command:
    detail = {"agent_id": "a1", "percent": percent, "stage": f"step {percent}"}
    return command.apply(E.PROGRESS, at, detail, progress={"percent": percent, "stage": f"step {percent}"})


def bounce(command: Command, times: int, start: float) -> Command:
    """Handed out and given back ``times`` times (a poll closing before delivery, over and over)."""
    for i in range(times):
        command = command.apply(E.DELIVER, start + 2 * i)
        command = command.apply(E.RETURN, start + 2 * i + 1, {"reason": "the poll closed before delivery"})
    return command


def test_consecutive_progress_reports_are_one_entry_with_first_time_last_detail_and_count() -> None:
    command = make().apply(E.DELIVER, T0 + 1)
    for i in range(1000):
        command = progress(command, T0 + 2 + i, i % 100)
    assert [h.status for h in command.history] == [S.QUEUED, S.SENT, S.EXECUTING]
    run = command.history[-1]
    assert (run.at, run.last_at, run.count) == (T0 + 2, T0 + 1001, 1000)
    assert run.detail == {"agent_id": "a1", "percent": 99, "stage": "step 99"}
    assert len(command.history) == 1002  # every change counts: the stores' version
    assert command.updated_at == T0 + 1001


def test_status_transitions_stay_exact_around_runs_of_progress() -> None:
    command = progress(progress(make().apply(E.DELIVER, T0 + 1), T0 + 2, 10), T0 + 3, 20)
    command = command.apply(E.REQUEST_CANCEL, T0 + 4, {"by": "alice"}, cancel_requested=True)
    command = progress(progress(command, T0 + 5, 30), T0 + 6, 40)
    command = command.apply(E.COMPLETE, T0 + 7, {"agent_id": "a1", "error": None}, result={"ok": True})
    assert [(h.status, h.event, h.count) for h in command.history] == [
        (S.QUEUED, None, 1), (S.SENT, E.DELIVER, 1), (S.EXECUTING, E.PROGRESS, 2),
        (S.EXECUTING, E.REQUEST_CANCEL, 1), (S.EXECUTING, E.PROGRESS, 2), (S.COMPLETED, E.COMPLETE, 1)]
    assert len(command.history) == 8 and command.updated_at == T0 + 7


def test_a_long_history_keeps_its_first_and_last_entries_and_counts_those_left_out() -> None:
    command = bounce(make(), 500, T0 + 1)  # 1,001 changes
    kept = list(command.history)
    assert len(kept) == HISTORY_FIRST + HISTORY_LAST
    whole = [make().history[0]] + [h for i in range(500) for h in bounce(make(), 1, T0 + 1 + 2 * i).history[1:]]
    assert kept[:HISTORY_FIRST] == whole[:HISTORY_FIRST]
    assert kept[HISTORY_FIRST:] == whole[-HISTORY_LAST:]
    assert command.history.left_out == len(whole) - len(kept) and command.history.first == HISTORY_FIRST
    assert len(command.history) == 1001
    # The next change is recorded in full: the cap moves, the version still grows.
    delivered = command.apply(E.DELIVER, T0 + 5000)
    assert delivered.history[-1].event is E.DELIVER and len(delivered.history) == 1002
    assert delivered.history.left_out == command.history.left_out + 1


def test_the_stored_document_of_a_capped_merged_history_is_bounded_and_round_trips() -> None:
    command = bounce(make(), 200, T0 + 1).apply(E.DELIVER, T0 + 1000)
    sizes = []
    for i in range(3000):
        command = progress(command, T0 + 1001 + i, i % 100)
        if i % 1000 == 999:
            sizes.append(len(str(command_document(command)["history"])))
    assert sizes[0] == sizes[1] == sizes[2]  # the cost of a change does not grow with the reports
    document = command_document(command)
    assert {"left_out": command.history.left_out} in document["history"]
    again = command_from_document(document)
    assert again == command and len(again.history) == len(command.history) == 1 + 400 + 1 + 3000


def test_a_command_built_with_a_tuple_of_entries_equals_its_history() -> None:
    command = make()
    assert command.history == (StatusChange(status=S.QUEUED, at=T0, event=None),)
    assert isinstance(command.history, History) and len(command.history) == 1


def test_events_of_a_merged_or_left_out_version() -> None:
    command = progress(progress(make().apply(E.DELIVER, T0 + 1), T0 + 2, 10), T0 + 3, 20)
    assert command_event(command, 2)["status"] == "sent"
    assert command_event(command, 3) == command_event(command, 4) == command_event(command)
    assert command_event(command)["progress"] == 20
    long = progress(bounce(make(), 200, T0 + 1).apply(E.DELIVER, T0 + 1000), T0 + 1001, 5)
    assert long.history.entry_at(HISTORY_FIRST + 5) is None  # left out: told as the command is now
    assert command_event(long, HISTORY_FIRST + 5) == command_event(long)
    assert command_event(long, 2)["status"] == "sent"


def test_parameters_count_as_json_or_as_memory_whichever_is_more() -> None:
    text = {"blob": "x" * 30_000}
    assert len(orjson.dumps(text)) <= parameters_bytes(text) < 1.1 * len(orjson.dumps(text))
    dense = {"x": [{} for _ in range(1000)]}  # as a parser makes them: one dict an item
    assert parameters_bytes(dense) >= 1000 * sys.getsizeof({}) > 20 * len(orjson.dumps(dense))
    shared = {"x": [0, None, True] * 1000}  # singletons: a pointer each, which the list counts
    assert parameters_bytes(shared) == max(len(orjson.dumps(shared)),
                                           sys.getsizeof(shared) + sys.getsizeof("x") + sys.getsizeof(shared["x"]))


def test_the_queue_counts_the_bytes_of_its_open_commands_parameters() -> None:
    queue = DeploymentQueue(delivery_deadline=3600, timeout_grace=30)
    first, second = make("c1", {"blob": "x" * 1000}), make("c2", {"blob": "y" * 500})
    queue.put(first)
    queue.put(second)
    assert queue.parameter_bytes == parameters_bytes(first.parameters) + parameters_bytes(second.parameters)
    queue.put(first.apply(E.DELIVER, T0 + 1))  # a change of an open command counts once
    assert queue.parameter_bytes == parameters_bytes(first.parameters) + parameters_bytes(second.parameters)
    queue.put(second.apply(E.CANCEL, T0 + 2))
    assert queue.parameter_bytes == parameters_bytes(first.parameters)
    queue.put(first.apply(E.DELIVER, T0 + 1).apply(E.COMPLETE, T0 + 3))
    assert queue.parameter_bytes == 0
