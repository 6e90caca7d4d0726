"""The store as the rest of the server uses it, opened once per backend: tests
that take the ``store`` fixture run against each (SQLite, and PostgreSQL in a
schema of the test's own)."""

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


def open_postgres(request: pytest.FixtureRequest) -> Store:
    url: str = request.getfixturevalue("postgres_url")
    return Store(open_writer(url), StoreReader(url))


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Store]] = {
    "sqlite": lambda request: open_sqlite(request.getfixturevalue("tmp_path")),
    "postgresql": open_postgres,
}


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    opened = BACKENDS[request.param](request)
    try:
        yield opened
    finally:
        opened.close()
