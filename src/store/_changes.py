"""Change notifications between replicas sharing one PostgreSQL database.

The PostgreSQL writer announces every committed command, deployment and agent
change on one channel, in the transaction that commits it (so a notification
is delivered only if, and only after, its change is committed); replicas
LISTEN on it to wake the queues and sockets that hold the changed thing. This
module is the whole contract: the channel's name and the payload's encoding,
used by the writer and by the listeners alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import attrs
import orjson

from ._ops import ForgetAgents, SaveAgent, SaveCommand, SaveDeployment, Write

CHANGES_CHANNEL = "trioscope_changes"
"""The ``LISTEN``/``pg_notify`` channel of every change."""

ChangeKind = Literal["command", "deployment", "agent"]
KINDS: frozenset[str] = frozenset(("command", "deployment", "agent"))


@attrs.frozen(kw_only=True)
class Change:
    """One committed change, as a notification payload carries it."""

    origin: str
    """The replica whose writer committed it (a listener skips its own)."""
    kind: ChangeKind
    id: str
    """The command id, the deployment hash, or the agent id."""
    deployment_hash: str
    """The deployment the changed thing belongs to (a deployment's own hash)."""
    version: int | None
    """A command's history length after the change; None for the other kinds."""


def encode_change(change: Change) -> str:
    """The payload of ``change``: compact JSON (``pg_notify`` takes text)."""
    return orjson.dumps({"origin": change.origin, "kind": change.kind, "id": change.id,
                         "deployment_hash": change.deployment_hash, "version": change.version}).decode()


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
    return Change(origin=fields["origin"], kind=kind, id=fields["id"], deployment_hash=fields["deployment_hash"],
                  version=version)


def changes_of(writes: Iterable[Write], origin: str, forgotten: dict[str, str]) -> list[Change]:
    """The changes a committed group of ``writes`` announces; ``forgotten`` maps
    the agents ``ForgetAgents`` deleted to their deployments (an agent that
    did not exist announces nothing). Audit entries announce nothing."""
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
        elif isinstance(write, ForgetAgents):
            changes.extend(Change(origin=origin, kind="agent", id=agent_id, deployment_hash=forgotten[agent_id],
                                  version=None)
                           for agent_id in write.agent_ids if agent_id in forgotten)
    return changes
