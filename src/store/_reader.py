"""The store as the rest of the server sees it: named, awaitable reads of
committed state, and the writer the store actor opens. Which database is
behind them (SQLite today) is this package's business alone."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import trio

from trioscope.domain.commands import Command
from trioscope.domain.deployments import AgentRecord, Deployment

from ._ops import Write
from ._reads import AuditRecord, BulkPart, CommandPart, StoredCommand
from ._sqlite import SqliteReader, SqliteWriter

T = TypeVar("T")


class StoreWriter(Protocol):
    """What the store actor (the single writer) needs of the database."""

    def commit(self, groups: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        """Each group all-or-nothing, all groups in one transaction; a group's
        error in its place: ``Conflict`` (a compare-and-set found the row
        changed) or ``Rejected`` (the database refused a value). Any other
        error is the database's and is raised (nothing of the call was written)."""

    def prune(self, before: float, batch: int) -> tuple[int, int]:
        """Delete up to ``batch`` commands finished before ``before`` (unix
        seconds) and up to ``batch`` audit records made before it; answer how
        many of each. Open commands are kept whatever their age."""

    def close(self) -> None: ...


def open_writer(path: Path) -> StoreWriter:
    """The database at ``path`` for writing, its schema created or migrated (blocking)."""
    return SqliteWriter(path)


class StoreReader:
    """Committed state, read without going through the writer: one query at a
    time, in a worker thread (the database calls block)."""

    def __init__(self, path: Path) -> None:
        self._reader = SqliteReader(path)
        self._limiter = trio.CapacityLimiter(1)

    async def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        bound = functools.partial(method, self._reader, *args, **kwargs)
        return await trio.to_thread.run_sync(bound, limiter=self._limiter)

    async def deployments(self) -> list[Deployment]:
        return await self._call(SqliteReader.deployments)

    async def agents(self) -> list[AgentRecord]:
        return await self._call(SqliteReader.agents)

    async def deployment(self, deployment_hash: str) -> Deployment | None:
        """One deployment as stored (another replica may have changed it)."""
        return await self._call(SqliteReader.deployment, deployment_hash)

    async def agent(self, agent_id: str) -> AgentRecord | None:
        """One agent's record as stored (None: never enrolled, or forgotten)."""
        return await self._call(SqliteReader.agent, agent_id)

    async def deployments_with_open_commands(self) -> list[str]:
        return await self._call(SqliteReader.deployments_with_open_commands)

    async def open_commands(self, deployment_hash: str) -> list[Command]:
        return await self._call(SqliteReader.open_commands, deployment_hash)

    async def command(self, command_id: str) -> Command | None:
        """The whole command, history, result and error included."""
        return await self._call(SqliteReader.command, command_id)

    async def stored_command(self, command_id: str, *, inline_bytes: int) -> StoredCommand | None:
        """The command with its result and error only if each is at most ``inline_bytes``."""
        return await self._call(SqliteReader.stored_command, command_id, inline_bytes=inline_bytes)

    async def command_part(self, command_id: str, part: BulkPart, offset: int, length: int) -> CommandPart | None:
        """A slice of a command's encoded result or error."""
        return await self._call(SqliteReader.command_part, command_id, part, offset, length)

    async def command_summaries(self, deployment_hash: str, *, status: str | None, since: float | None,
                                until: float | None, limit: int, offset: int, max_bytes: int,
                                error_bytes: int) -> tuple[list[StoredCommand], int]:
        """A page of a deployment's commands, newest first, within ``max_bytes``,
        and how many match: summaries without history or result."""
        return await self._call(SqliteReader.command_summaries, deployment_hash, status=status, since=since,
                                until=until, limit=limit, offset=offset, max_bytes=max_bytes,
                                error_bytes=error_bytes)

    async def audit(self, tenant: str | None, *, action: str | None, actor: str | None, since: float | None,
                    until: float | None, limit: int, offset: int,
                    every_tenant: bool = False) -> tuple[list[AuditRecord], int]:
        """A page of a tenant's audit records (None: those in no tenant's log;
        ``every_tenant``: all), newest first, and how many match."""
        return await self._call(SqliteReader.audit, tenant, action=action, actor=actor, since=since, until=until,
                                limit=limit, offset=offset, every_tenant=every_tenant)

    def close(self) -> None:
        self._reader.close()
