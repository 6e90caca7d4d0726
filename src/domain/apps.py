"""The apps of a deployment as its agent last saw them.

The TryDirect ``status`` agent posts an app's status after each ``health``,
``logs`` and ``restart`` command it ran (``POST /api/v1/apps/status``): the
app's code (a compose service), ``running``, ``stopped`` or ``error``, the
lines it read (a health summary, errors, or the container log it fetched)
and when. The newest status of each app is kept, with the last lines of its
logs; an older one arriving late changes nothing.

What a client sends is bounded twice: on the wire (``AppStatusUpdate``,
refused 400 beyond) and in what is kept (``kept_logs``: the newest lines
within ``KEPT_LOG_LINES`` and ``KEPT_LOG_BYTES``), so that a deployment's
apps stay small enough to show on its GET and to hold in the store.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import attrs

from trioscope.wire import Identifier, TextRule, bounded_list, constrained, rfc3339_millis

MAX_SENT_LOG_LINES = 1000
"""Lines one status may carry: the status agent's ``logs`` command reads at
most 1,000 lines (400 unless asked) and sends them all; more are refused."""
MAX_SENT_LINE = 64 * 1024
"""Characters of one line as sent (the body's size bounds the whole too)."""
KEPT_LOG_LINES = 50
"""Lines kept of one status: its newest."""
KEPT_LINE_BYTES = 4 * 1024
"""Bytes (UTF-8) kept of one line; a longer one is cut."""
KEPT_LOG_BYTES = 16 * 1024
"""Bytes kept of one status's lines in all: with 200 apps a deployment at
most (``commands.max_apps``), its GET holds at most ~3.3 MB of lines."""
MAX_AHEAD = 300.0
"""Seconds a status's ``timestamp`` may be ahead of the server's clock (as
much as a signed request's): a later one is refused, since it would keep every
status of its app sent until then from being kept."""

DeploymentHash: Any = constrained("DeploymentHash", str, TextRule(128))
AppStatusName: Any = constrained(
    "AppStatusName", str,
    TextRule(32, re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}"),
             "1-32 letters, digits or _ . : - starting with a letter or digit (running, stopped, error)"),
)
"""The status agent sends ``running``, ``stopped`` or ``error``; any such word
is kept as sent (a later agent may say more)."""
AppLogLine: Any = constrained("AppLogLine", str, TextRule(MAX_SENT_LINE))
AppLogs: Any = bounded_list("AppLogs", AppLogLine, MAX_SENT_LOG_LINES)


@attrs.frozen(kw_only=True)
class AppStatusUpdate:
    """``POST /api/v1/apps/status``: an app's status as the agent saw it
    (the status agent's ``AppStatusUpdate``). Other keys are ignored."""

    deployment_hash: DeploymentHash
    """The agent's own deployment (403 ``wrong_deployment`` otherwise)."""
    app_code: Identifier
    """The app (a compose service): 1-128 letters, digits or ``. _ : @ -``."""
    status: AppStatusName
    logs: AppLogs = attrs.field(factory=list)
    """Oldest first; the newest ``KEPT_LOG_LINES`` are kept, each cut to ``KEPT_LINE_BYTES``."""
    timestamp: datetime | None = None
    """When the agent saw it (RFC 3339); None: when the server received it."""


@attrs.frozen(kw_only=True)
class AppStatus:
    """The newest status of one app of a deployment, as stored."""

    deployment_hash: str
    app_code: str
    status: str
    logs: tuple[str, ...] = ()
    updated_at: float
    """When the agent saw it (unix seconds): a status older than the stored one is not kept."""
    received_at: float
    """When the server took it (unix seconds)."""
    agent_id: str
    """The agent that sent it."""


@attrs.frozen
class KeptLogs:
    """What ``kept_logs`` keeps of a status's lines, and what it left out."""

    lines: tuple[str, ...]
    """The newest lines, oldest first."""
    dropped: int
    """Older lines left out (beyond ``KEPT_LOG_LINES`` or ``KEPT_LOG_BYTES``)."""
    cut: int
    """Kept lines cut to ``KEPT_LINE_BYTES``."""


def _cut(line: str, limit: int) -> str:
    """``line`` in at most ``limit`` bytes of UTF-8, never half a character."""
    encoded = line.encode()
    return line if len(encoded) <= limit else encoded[:limit].decode(errors="ignore")


def kept_logs(lines: list[str] | tuple[str, ...], *, max_lines: int = KEPT_LOG_LINES,
              max_line_bytes: int = KEPT_LINE_BYTES, max_bytes: int = KEPT_LOG_BYTES) -> KeptLogs:
    """The newest of ``lines`` that fit ``max_lines`` and ``max_bytes``, each cut to ``max_line_bytes``."""
    kept: list[str] = []
    used = cut = 0
    for line in reversed(lines):
        if len(kept) == max_lines:
            break
        short = _cut(line, max_line_bytes)
        size = len(short.encode())
        if used + size > max_bytes:
            break
        kept.append(short)
        used += size
        if len(short) < len(line):
            cut += 1
    return KeptLogs(tuple(reversed(kept)), len(lines) - len(kept), cut)


def app_status(update: AppStatusUpdate, agent_id: str, received_at: float) -> tuple[AppStatus, KeptLogs]:
    """The status to store of ``update`` (its lines as ``kept_logs`` keeps
    them), sent by ``agent_id`` and received at ``received_at``."""
    logs = kept_logs(update.logs)
    seen = update.timestamp.timestamp() if update.timestamp is not None else received_at
    return AppStatus(deployment_hash=update.deployment_hash, app_code=update.app_code, status=update.status,
                     logs=logs.lines, updated_at=seen, received_at=received_at, agent_id=agent_id), logs


def app_status_event(deployment_hash: str, app_code: str, status: str, updated_at: float) -> dict[str, Any]:
    """The ``app_status`` event of ``/ws/user``: a newer status of an app was kept."""
    return {"type": "app_status", "deployment_hash": deployment_hash, "app_code": app_code, "status": status,
            "updated_at": rfc3339_millis(updated_at)}


def app_view(app: AppStatus) -> dict[str, Any]:
    """An app as a deployment's GET shows it (``apps``)."""
    return {"app_code": app.app_code, "status": app.status, "logs": list(app.logs),
            "updated_at": rfc3339_millis(app.updated_at), "received_at": rfc3339_millis(app.received_at),
            "agent_id": app.agent_id}
