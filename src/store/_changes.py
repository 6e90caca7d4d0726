"""Change notifications between replicas sharing one PostgreSQL database.

The PostgreSQL writer announces every committed command, deployment and agent
change, every alert change told to users (its audit record) and every app
status kept (with the status, for other replicas' users), on one channel, in the transaction that commits it (so a notification
is delivered only if, and only after, its change is committed); replicas
LISTEN on it to wake the queues and sockets that hold the changed thing. This
module is the whole contract: the channel's name and the payload's encoding,
used by the writer and by the listeners alike, and what the feed that listens
(``_listen``) hands its follower (``FeedEvent``).

A command's notification carries its row as committed (the four columns of
``_command_rows``, as JSON) whenever the payload stays under PostgreSQL's
limit, so the replica that hears of it needs no round trip to read it back;
a larger one carries none and is read (``Change.command`` is None). So does
an alert's notification with its audit record (``Change.alert``; read: the
newest record of the alert's fingerprint).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import attrs
import cattrs
import orjson

from trioscope.domain.alerts import ALERT_ACTIONS
from trioscope.domain.commands import Command

from ._command_rows import command_from_values
from ._ops import AuditEntry, ForgetAgents, SaveAgent, SaveAppStatus, SaveCommand, SaveDeployment, Write

CHANGES_CHANNEL = "trioscope_changes"
"""The ``LISTEN``/``pg_notify`` channel of every change."""

PAYLOAD_LIMIT = 8000
"""``pg_notify`` refuses payloads of this many bytes or more (PostgreSQL's default build)."""

ChangeKind = Literal["command", "deployment", "agent", "alert", "app"]
KINDS: frozenset[str] = frozenset(("command", "deployment", "agent", "alert", "app"))

CommandRow = tuple[bytes, bytes, bytes, bytes]
"""A command's ``(document, error, history, result)`` columns as the writer stores them."""


@attrs.frozen
class AppState:
    """An app's status as its change announces it (its lines are not carried)."""

    status: str
    updated_at: float


@attrs.frozen(kw_only=True)
class Change:
    """One committed change, as a notification payload carries it."""

    origin: str
    """The replica whose writer committed it (a listener skips its own)."""
    kind: ChangeKind
    id: str
    """The command id, the deployment hash, the agent id, the alert's fingerprint, or the app's code."""
    deployment_hash: str
    """The deployment the changed thing belongs to (a deployment's own hash;
    empty for an alert, which belongs to a tenant)."""
    version: int | None
    """A command's history length after the change; None for the other kinds."""
    command: Command | None = attrs.field(default=None, eq=False, repr=False)
    """A command as this change committed it, when the payload had room for it
    (None: read it). Not compared: the same change, with or without its row."""
    alert: AuditEntry | None = attrs.field(default=None, eq=False, repr=False)
    """An alert change's audit record (``alert.firing`` or ``alert.resolved``),
    when the payload had room for it (None: read the newest of its fingerprint)."""
    app: AppState | None = attrs.field(default=None, eq=False, repr=False)
    """An app change's status (always carried: a few words)."""


@attrs.frozen
class ChangeBatch:
    """What a replica does with one batch of changes, in the order it must
    (``ChangeBatch.of``; the change feed does it): the directory reads the
    changed deployments and agents again first, so that the commands after
    them find them; each changed command, as its newest notification carried
    it or read back, has the events of each announced version published and
    goes to its queue; then the apps' statuses and the alerts."""

    deployments: tuple[str, ...]
    agents: tuple[str, ...]
    versions: dict[str, list[int]]
    """Each changed command's announced versions (history lengths), in commit order."""
    carried: dict[str, Command]
    """The commands whose newest notification carried a row at least as new as every version announced."""
    apps: tuple[Change, ...]
    alerts: tuple[Change, ...]

    @classmethod
    def of(cls, changes: Iterable[Change]) -> ChangeBatch:
        changes = tuple(changes)
        versions: dict[str, list[int]] = {}
        carried: dict[str, Command] = {}
        for change in changes:
            if change.kind == "command":
                versions.setdefault(change.id, []).append(change.version or 0)
                if change.command is not None:
                    carried[change.id] = change.command  # in commit order: the newest wins
        return cls(
            deployments=tuple(dict.fromkeys(c.id for c in changes if c.kind == "deployment")),
            agents=tuple(dict.fromkeys(c.id for c in changes if c.kind == "agent")),
            versions=versions,
            # A row older than the newest change announced (which had no room for its own) will not do.
            carried={i: c for i, c in carried.items() if len(c.history) >= max(versions[i])},
            apps=tuple(c for c in changes if c.kind == "app" and c.app is not None),
            alerts=tuple(c for c in changes if c.kind == "alert"),
        )

    def unread(self) -> list[str]:
        """The changed commands to read back: those no notification carried new enough."""
        return [i for i in self.versions if i not in self.carried]


def encode_change(change: Change, row: CommandRow | None = None, *, carry_alert: bool = True) -> str:
    """The payload of ``change``: compact JSON (``pg_notify`` takes text), with
    a command's ``row`` as committed, or (``carry_alert``) an alert's audit
    record, when the whole is under ``PAYLOAD_LIMIT``."""
    fields: dict[str, Any] = {"origin": change.origin, "kind": change.kind, "id": change.id,
                              "deployment_hash": change.deployment_hash, "version": change.version}
    if change.app is not None:
        fields["app"] = {"status": change.app.status, "updated_at": change.app.updated_at}
    entry = change.alert
    if entry is not None and carry_alert:
        with_alert = orjson.dumps({**fields, "alert": {"at": entry.at, "tenant": entry.tenant, "actor": entry.actor,
                                                       "action": entry.action, "details": entry.details}})
        if len(with_alert) < PAYLOAD_LIMIT:
            return with_alert.decode()
    if row is not None:
        # The columns are JSON already: carried as they are, not encoded again.
        with_row = orjson.dumps({**fields, "row": [orjson.Fragment(column) for column in row]})
        if len(with_row) < PAYLOAD_LIMIT:
            return with_row.decode()
    return orjson.dumps(fields).decode()


def origin_prefix(origin: str) -> bytes:
    """How every payload of ``origin`` begins (``encode_change`` writes the
    origin first): a listener skips its own replica's without parsing them."""
    return b'{"origin":' + orjson.dumps(origin) + b","


def decode_change(payload: str | bytes) -> Change:
    """The change a payload announces.

    Raises:
        ValueError: the payload is not one ``encode_change`` makes (named in the message).
    """
    try:
        fields = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"change payload is not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise ValueError("change payload is not a JSON object")
    for name in ("origin", "id", "deployment_hash"):
        if not isinstance(fields.get(name), str):
            raise ValueError(f"change payload: {name} is not a string")
    kind = fields.get("kind")
    if kind not in KINDS:
        raise ValueError(f"change payload: unknown kind {kind!r}")
    version = fields.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise ValueError("change payload: version is not an integer or null")
    command = None
    row = fields.get("row")
    if row is not None:
        if kind != "command" or not isinstance(row, list) or len(row) != 4 or not isinstance(row[0], dict):
            raise ValueError("change payload: row is not a command's four columns")
        try:
            command = command_from_values(*row)
        except (cattrs.BaseValidationError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"change payload: row is not a command: {exc}") from None
        if command.id != fields["id"] or len(command.history) != version:
            raise ValueError("change payload: row is not the command and version announced")
    alert = fields.get("alert")
    if alert is not None:
        alert = _alert_entry(kind, fields["id"], alert)
    app = _app_state(kind, fields.get("app"))
    return Change(origin=fields["origin"], kind=kind, id=fields["id"], deployment_hash=fields["deployment_hash"],
                  version=version, command=command, alert=alert, app=app)


def _app_state(kind: str, app: Any) -> AppState | None:
    """An app change's status (it always has one; no other change has)."""
    if app is None and kind != "app":
        return None
    if kind != "app" or not isinstance(app, dict) or not isinstance(app.get("status"), str):
        raise ValueError("change payload: app is not an app's status")
    updated_at = app.get("updated_at")
    if not isinstance(updated_at, (int, float)) or isinstance(updated_at, bool):
        raise ValueError("change payload: app is not an app's status")
    return AppState(app["status"], float(updated_at))


def _alert_entry(kind: str, fingerprint: str, alert: Any) -> AuditEntry:
    if kind != "alert" or not isinstance(alert, dict):
        raise ValueError("change payload: alert is not an alert's audit record")
    at, action, details = alert.get("at"), alert.get("action"), alert.get("details")
    if not isinstance(at, (int, float)) or isinstance(at, bool) or action not in ALERT_ACTIONS \
            or not isinstance(details, dict) or not isinstance(alert.get("tenant"), str) \
            or not isinstance(alert.get("actor"), str):
        raise ValueError("change payload: alert is not an alert's audit record")
    return AuditEntry(at=float(at), tenant=alert["tenant"], actor=alert["actor"], action=action,
                      resource_type="alert", resource_id=fingerprint, details=details)


def changes_of(writes: Iterable[Write], origin: str, forgotten: dict[str, str]) -> list[Change]:
    """The changes a committed group of ``writes`` announces; ``forgotten`` maps
    the agents ``ForgetAgents`` deleted to their deployments (an agent that
    did not exist announces nothing). Audit entries announce nothing, but
    those of alert changes (the alerts actor's), which other replicas tell
    their own users. An app status kept is announced with the status, for
    other replicas' users too."""
    changes: list[Change] = []
    for write in writes:
        if isinstance(write, SaveCommand):
            c = write.command
            changes.append(Change(origin=origin, kind="command", id=c.id, deployment_hash=c.deployment_hash,
                                  version=len(c.history)))
        elif isinstance(write, SaveDeployment):
            d = write.deployment
            changes.append(Change(origin=origin, kind="deployment", id=d.hash, deployment_hash=d.hash, version=None))
        elif isinstance(write, SaveAgent):
            a = write.agent
            changes.append(Change(origin=origin, kind="agent", id=a.id, deployment_hash=a.deployment_hash,
                                  version=None))
        elif isinstance(write, AuditEntry):
            if write.resource_type == "alert" and write.action in ALERT_ACTIONS and write.resource_id:
                changes.append(Change(origin=origin, kind="alert", id=write.resource_id, deployment_hash="",
                                      version=None, alert=write))
        elif isinstance(write, SaveAppStatus):
            a = write.app
            changes.append(Change(origin=origin, kind="app", id=a.app_code, deployment_hash=a.deployment_hash,
                                  version=None, app=AppState(a.status, a.updated_at)))
        elif isinstance(write, ForgetAgents):
            changes.extend(Change(origin=origin, kind="agent", id=agent_id, deployment_hash=forgotten[agent_id],
                                  version=None)
                           for agent_id in write.agent_ids if agent_id in forgotten)
    return changes


@attrs.frozen
class Connected:
    """The feed is listening (again): changes committed before now, while it was
    not, were not announced to this replica."""

    again: bool
    """False for the first connection of this process."""


FeedEvent = Sequence[Change] | Connected
"""What the follower is handed: the changes of one read of the socket (those of
one transaction arrive together), in commit order, or ``Connected``."""
