"""Reads that meet the database away are said once when the first does and
once when one works again: a server that only reads (its requests answered
503 meanwhile) said nothing of an outage but its driver's own pool lines."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from trioscope.store import StoreReader, Unavailable, open_writer


async def test_an_outage_of_reads_is_said_once_and_its_end_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    database = tmp_path / "trioscope.db"
    open_writer(database).close()
    reader = StoreReader(database)
    away = True
    read = reader._read

    async def flaky(method, *args, **kwargs):  # type: ignore[no-untyped-def]
        if away:
            raise Unavailable("connection refused")
        return await read(method, *args, **kwargs)

    monkeypatch.setattr(reader, "_read", flaky)
    caplog.set_level(logging.INFO, logger="trioscope.store")
    for _ in range(5):
        with pytest.raises(Unavailable):
            await reader.deployments()
    away = False
    assert await reader.deployments() == []
    assert await reader.deployments() == []
    said = [(r.levelno, r.event) for r in caplog.records if hasattr(r, "event")]
    assert said == [(logging.WARNING, "database_reads_failing"), (logging.INFO, "database_reads_back")]
    assert str(database) in caplog.records[0].getMessage()
    reader.close()
