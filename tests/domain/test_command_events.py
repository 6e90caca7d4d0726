"""Users' events of a command's changes, computed from the command and which
version changed: the same on whichever replica computes them."""

from __future__ import annotations

from trioscope.domain.commands import (
    DEADLINE_EXPIRY, TIMED_OUT, CommandEvent, Priority, announced_events, change_events, command_event, new_command,
)


def _command():  # noqa: ANN202
    return new_command(command_id="cmd_1", deployment_hash="d", tenant="t", type="restart", parameters={},
                       priority=Priority.NORMAL, created_by="u", now=100.0, schedule_at=None, timeout_seconds=5,
                       requires_confirmation=False, sequence=1)


def test_each_version_has_the_event_its_writer_published() -> None:
    queued = _command()
    sent = queued.apply(CommandEvent.DELIVER, 101.0)
    running = sent.apply(CommandEvent.PROGRESS, 102.0, {"percent": 40, "stage": "pull"},
                         progress={"percent": 40, "stage": "pull"})
    done = running.apply(CommandEvent.COMPLETE, 103.0, result={"ok": True})
    published = [command_event(queued), command_event(sent), command_event(running), command_event(done)]
    assert [command_event(done, version) for version in (1, 2, 3, 4)] == published
    assert [e["status"] for e in published] == ["queued", "sent", "executing", "completed"]
    assert published[2]["progress"] == 40 and published[2]["stage"] == "pull"


def test_a_deadline_change_has_an_alert_and_no_other_does() -> None:
    sent = _command().apply(CommandEvent.DELIVER, 101.0)
    timed_out = sent.apply(CommandEvent.TIME_OUT, 107.0, {"error": TIMED_OUT}, error=TIMED_OUT)
    kinds = [e["type"] for e in change_events(timed_out)]
    assert kinds == ["command_completed", "system_alert"]
    assert change_events(timed_out, 2) == [command_event(sent)]
    expired = _command().apply(CommandEvent.EXPIRE, 4000.0, {"reason": DEADLINE_EXPIRY})
    assert "expired" in change_events(expired)[1]["message"]
    retired = _command().apply(CommandEvent.EXPIRE, 200.0, {"reason": "the agent was retired"})
    assert [e["type"] for e in change_events(retired)] == ["command_completed"]


def test_announced_versions_have_their_events_and_versions_the_command_lacks_none() -> None:
    sent = _command().apply(CommandEvent.DELIVER, 101.0)
    done = sent.apply(CommandEvent.COMPLETE, 103.0, result={"ok": True})
    assert announced_events(done, [2, 3]) == [command_event(done, 2), command_event(done, 3)]
    # Read back before the newest change was committed: it has no event of it yet.
    assert announced_events(sent, [2, 3]) == [command_event(sent, 2)]
    assert announced_events(done, [0, -1, 4]) == []
