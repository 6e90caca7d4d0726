"""What is kept of an app's status (``trioscope.domain.apps``): its newest
lines within their bounds, each cut on a character's boundary; its time."""

from __future__ import annotations

from datetime import UTC, datetime

from trioscope.domain.apps import (
    KEPT_LINE_BYTES, KEPT_LOG_BYTES, KEPT_LOG_LINES, AppStatusUpdate, app_status, app_status_event, app_view,
    kept_logs,
)


def test_the_newest_lines_are_kept_oldest_first_within_the_line_count() -> None:
    lines = [f"line {i}" for i in range(400)]
    kept = kept_logs(lines)
    assert kept.lines == tuple(lines[-KEPT_LOG_LINES:]) and (kept.dropped, kept.cut) == (400 - KEPT_LOG_LINES, 0)
    assert kept_logs([]) == kept_logs(()) and kept_logs([]).lines == ()


def test_a_long_line_is_cut_on_a_characters_boundary() -> None:
    line = "é" * KEPT_LINE_BYTES  # two bytes each: the cut falls inside none
    kept = kept_logs(["short", line])
    assert kept.lines[0] == "short" and kept.lines[1] == "é" * (KEPT_LINE_BYTES // 2)
    assert (kept.dropped, kept.cut) == (0, 1)
    odd = kept_logs(["a" + "€" * KEPT_LINE_BYTES])  # three bytes each, after one
    assert len(odd.lines[0].encode()) <= KEPT_LINE_BYTES and odd.lines[0] == "a" + "€" * ((KEPT_LINE_BYTES - 1) // 3)


def test_the_lines_kept_fit_the_byte_budget_newest_first() -> None:
    lines = ["x" * KEPT_LINE_BYTES] * 10
    kept = kept_logs(lines)
    assert len(kept.lines) == KEPT_LOG_BYTES // KEPT_LINE_BYTES and kept.dropped == 10 - len(kept.lines)
    assert sum(len(line.encode()) for line in kept.lines) <= KEPT_LOG_BYTES


def test_a_status_without_its_time_is_the_time_it_was_received() -> None:
    update = AppStatusUpdate(deployment_hash="h1", app_code="web", status="running", logs=["a", "b"])
    app, logs = app_status(update, "agent-1", 1_700_000_000.25)
    assert (app.updated_at, app.received_at, app.logs, app.agent_id) == (1_700_000_000.25, 1_700_000_000.25,
                                                                         ("a", "b"), "agent-1")
    assert logs.lines == ("a", "b")
    seen = datetime(2026, 12, 6, 10, 0, 0, tzinfo=UTC)
    app, _ = app_status(AppStatusUpdate(deployment_hash="h1", app_code="web", status="stopped", timestamp=seen),
                        "agent-1", 1_800_000_000.0)
    assert app.updated_at == seen.timestamp()
    assert app_status_event("h1", "web", "stopped", app.updated_at) == {
        "type": "app_status", "deployment_hash": "h1", "app_code": "web", "status": "stopped",
        "updated_at": "2026-12-06T10:00:00.000Z"}
    assert app_view(app) == {"app_code": "web", "status": "stopped", "logs": [],
                             "updated_at": "2026-12-06T10:00:00.000Z", "received_at": "2027-01-15T08:00:00.000Z",
                             "agent_id": "agent-1"}
