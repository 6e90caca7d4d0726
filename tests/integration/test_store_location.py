"""A server keeps its store where ``--database`` says: ``sqlite:PATH`` puts the
SQLite file there instead of in the data directory."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.integration.test_commands import Operator
from tests.server_process import ServerProcess
from trioscope.store import DATABASE_FILE, StoreReader


async def test_sqlite_path_puts_the_store_in_that_file(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "store.sqlite3"
    with ServerProcess(["--database", f"sqlite:{elsewhere}"]) as server:
        async with httpx.AsyncClient(timeout=10) as client:
            made = await Operator(server, "kim", "located").create_deployment(client)
        assert not (Path(server.data_dir) / DATABASE_FILE).exists()
    reader = StoreReader(elsewhere)
    try:
        assert [d.hash for d in await reader.deployments()] == [made["deployment_hash"]]
    finally:
        reader.close()
