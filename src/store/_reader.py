"""Async access to the reader connection: one query at a time in a worker thread."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from ._sqlite import SqliteReader

T = TypeVar("T")


class StoreReader:
    """Committed state, read without going through the writer. Methods are those
    of ``SqliteReader``, awaited: ``await reader.call(SqliteReader.command, id)``."""

    def __init__(self, path: Path) -> None:
        self._reader = SqliteReader(path)
        self._limiter = trio.CapacityLimiter(1)

    async def call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        bound = functools.partial(method, self._reader, *args, **kwargs)
        return await trio.to_thread.run_sync(bound, limiter=self._limiter)

    def close(self) -> None:
        self._reader.close()
