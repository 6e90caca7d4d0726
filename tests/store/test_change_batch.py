"""A batch of other replicas' changes read in the order the change feed acts
on it (``ChangeBatch``): plain values, no database."""

from __future__ import annotations

from trioscope.domain.commands import CommandEvent
from trioscope.store import Change, ChangeBatch
from trioscope.store._changes import AppState

from .test_protocol import command


def change(kind: str, id_: str, version: int | None = None, **carried: object) -> Change:
    return Change(origin="replica-b", kind=kind, id=id_, deployment_hash="h1", version=version,  # type: ignore[arg-type]
                  **carried)  # type: ignore[arg-type]


def test_records_are_named_once_each_in_order() -> None:
    batch = ChangeBatch.of([change("agent", "a2"), change("deployment", "h1"), change("agent", "a1"),
                            change("agent", "a2"), change("deployment", "h1")])
    assert (batch.deployments, batch.agents) == (("h1",), ("a2", "a1"))
    assert batch.versions == {} and batch.unread() == [] and batch.apps == batch.alerts == ()


def test_the_newest_carried_row_is_taken_when_it_is_as_new_as_every_version_announced() -> None:
    queued = command(1)
    sent = queued.apply(CommandEvent.DELIVER, 101.0)
    done = sent.apply(CommandEvent.COMPLETE, 102.0, result={"ok": True})
    batch = ChangeBatch.of([change("command", "cmd_1", 2, command=sent), change("command", "cmd_1", 3, command=done)])
    assert batch.versions == {"cmd_1": [2, 3]} and batch.carried == {"cmd_1": done} and batch.unread() == []


def test_a_row_older_than_a_later_announced_version_is_read_back() -> None:
    queued = command(1)
    sent = queued.apply(CommandEvent.DELIVER, 101.0)
    # Version 3's notification had no room for its row: version 2's will not do.
    batch = ChangeBatch.of([change("command", "cmd_1", 2, command=sent), change("command", "cmd_1", 3),
                            change("command", "cmd_2", 1)])
    assert batch.versions == {"cmd_1": [2, 3], "cmd_2": [1]}
    assert batch.carried == {} and batch.unread() == ["cmd_1", "cmd_2"]


def test_apps_without_their_status_and_other_kinds_are_kept_apart() -> None:
    status = AppState(status="running", updated_at=5.0)
    batch = ChangeBatch.of([change("app", "web", app=status), change("app", "db"), change("alert", "fp1"),
                            change("command", "cmd_1", 1)])
    assert [c.id for c in batch.apps] == ["web"]
    assert [c.id for c in batch.alerts] == ["fp1"] and list(batch.versions) == ["cmd_1"]
