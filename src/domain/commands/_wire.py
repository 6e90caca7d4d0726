"""Command requests as they arrive on the wire, decoded strictly (every bad
field named with its path) by the same converter as reports."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

import attrs

from trioscope.wire import MAX_COMMAND_TIMEOUT, IntRange, JsonRule, Name, Percent, Text, TextRule, bounded_list, constrained

# Annotated Any: a NewType made by a call is opaque to a type checker (the converter
# checks these values).
CommandType: Any = constrained(
    "CommandType", str,
    TextRule(100, re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}"),
             "1-100 letters, digits or _ . : - starting with a letter or digit (e.g. application.update)"),
)
TimeoutSeconds: Any = constrained("TimeoutSeconds", int, IntRange(1, MAX_COMMAND_TIMEOUT))
Token: Any = constrained("Token", str, TextRule(512))
AnyId: Any = constrained("AnyId", str, TextRule(128))
Capabilities: Any = bounded_list("Capabilities", Name, 64)

MAX_JSON_DEPTH = 32
"""Nesting of free-form JSON (parameters, results, system info, metadata)."""
JsonObject: Any = constrained("JsonObject", dict, JsonRule(MAX_JSON_DEPTH, dict))
JsonValue: Any = constrained("JsonValue", object, JsonRule(MAX_JSON_DEPTH))
JsonList: Any = constrained("JsonList", list, JsonRule(MAX_JSON_DEPTH, list))

MAX_PARAMETERS_BYTES = 64 * 1024
"""``parameters`` of one command, as compact JSON."""
MAX_SCHEDULE_AHEAD = 30 * 24 * 3600.0
"""Seconds ahead a command may be scheduled (``schedule_at``) at most: a
command waiting holds one of its deployment's open-command places."""

PriorityName = Literal["low", "normal", "high", "critical"]

MAX_ESTIMATED_DURATION = 366 * 24 * 3600
"""Seconds a command's ``metadata.estimated_duration`` may say at most (a year)."""
EstimatedDuration: Any = constrained("EstimatedDuration", int, IntRange(0, MAX_ESTIMATED_DURATION))


@attrs.frozen(kw_only=True)
class CommandMetadata:
    """``metadata`` of a new command (the seed's Command model): what the
    operator says of it, stored with it and shown with it, and sent to the
    agent with the command. The server acts on ``requires_confirmation`` only."""

    requires_confirmation: bool | None = None
    """As the body's ``requires_confirmation`` (either asks for a confirmation)."""
    rollback_on_failure: bool = False
    estimated_duration: EstimatedDuration | None = None
    """Whole seconds the operator expects the command to take; None: not said."""
    checkpoint_support: bool = False


@attrs.frozen(kw_only=True)
class CreateCommand:
    """``POST /api/v1/users/{user}/deployments/{hash}/commands``."""

    type: CommandType
    parameters: JsonObject = attrs.field(factory=dict)
    priority: PriorityName = "normal"
    schedule_at: datetime | None = None
    timeout_seconds: TimeoutSeconds = 300
    requires_confirmation: bool = False
    metadata: CommandMetadata = attrs.field(factory=CommandMetadata)


ReportStatus = Literal["completed", "success", "failed", "error", "timeout", "executing", "cancelled"]


@attrs.frozen(kw_only=True)
class CommandReport:
    """``POST /api/v1/agent/commands/report``: a final result (``completed``,
    ``success``, ``failed``, ``cancelled`` after a cancel) or progress
    (``executing`` with ``progress`` and ``stage``). ``error`` and ``timeout``
    are failures too: the TryDirect status agent reports ``error`` when a
    command's own step fails (a proxy it could not configure, say) and names
    ``timeout`` among its outcomes; refused, its report was lost and the
    command timed out on the server with the agent's error nowhere."""

    command_id: AnyId
    deployment_hash: AnyId
    status: ReportStatus
    result: JsonValue = None
    error: JsonValue = None
    errors: JsonList | None = None
    completed_at: datetime | None = None
    started_at: datetime | None = None
    progress: Percent | None = None
    stage: Name | None = None
    executed_by: Name | None = None


@attrs.frozen(kw_only=True)
class AgentRegistration:
    """``POST /api/v1/agent/register`` (the seed's body plus the enrollment token)."""

    deployment_hash: AnyId
    enrollment_token: Token | None = None
    """Or sent as ``Authorization: Bearer <token>``."""
    public_key: Text | None = None
    capabilities: Capabilities = attrs.field(factory=list)
    system_info: JsonObject = attrs.field(factory=dict)
    agent_version: Name | None = None


MAX_LOG_MESSAGE = 16 * 1024
"""Characters of one log line; the agent cuts longer ones."""
LogMessage: Any = constrained("LogMessage", str, TextRule(MAX_LOG_MESSAGE))
LogLevel = Literal["trace", "debug", "info", "notice", "warning", "error", "critical"]
LogSource = Literal["stdout", "stderr"]


@attrs.frozen(kw_only=True)
class LogEntry:
    """One line of a followed container's log: the seed's ``log_entry`` event fields."""

    timestamp: datetime
    level: LogLevel
    message: LogMessage
    source: LogSource


MAX_LOG_BATCH = 500
"""Entries in one batch an agent sends of a follow."""
LogEntries: Any = bounded_list("LogEntries", LogEntry, MAX_LOG_BATCH)


@attrs.frozen(kw_only=True)
class LogBatch:
    """``POST /api/v1/agent/commands/logs``: lines of a followed container's log."""

    command_id: AnyId
    deployment_hash: AnyId
    entries: LogEntries
