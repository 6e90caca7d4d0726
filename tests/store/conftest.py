"""The store as the rest of the server uses it, opened once per backend: tests
that take the ``store`` fixture run against each (today SQLite alone; a second
backend is one more entry in ``BACKENDS``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import attrs
import pytest
import trio

from trioscope.store import DATABASE_FILE, StoreReader, StoreWriter, Write, open_writer


@attrs.frozen
class Store:
    """A writer and a reader of one database, the writer's blocking calls made
    in a worker thread as the store actor makes them."""

    writer: StoreWriter
    reader: StoreReader

    async def commit(self, *groups: Sequence[Write]) -> list[BaseException | None]:
        return await trio.to_thread.run_sync(self.writer.commit, groups)

    async def write(self, *writes: Write) -> None:
        """One group that must be written."""
        [error] = await self.commit(writes)
        assert error is None, repr(error)

    async def prune(self, before: float, batch: int) -> tuple[int, int]:
        return await trio.to_thread.run_sync(self.writer.prune, before, batch)

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


def open_sqlite(tmp_path: Path) -> Store:
    path = tmp_path / DATABASE_FILE
    return Store(open_writer(path), StoreReader(path))


BACKENDS: dict[str, Callable[[Path], Store]] = {"sqlite": open_sqlite}


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = BACKENDS[request.param](tmp_path)
    try:
        yield opened
    finally:
        opened.close()
