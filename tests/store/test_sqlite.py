"""The SQLite writer: groups of writes fail alone, whatever makes them fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from trioscope.domain.deployments import Deployment
from trioscope.store import SaveDeployment, SqliteReader, SqliteWriter


def deployment(name: str, metadata: dict[str, Any]) -> SaveDeployment:
    return SaveDeployment(Deployment(hash=name, tenant="t", user_id="u", created_at=1.0, enrollment_hash=None,
                                     metadata=metadata))


def test_a_group_that_cannot_be_encoded_fails_alone(tmp_path: Path) -> None:
    deep: Any = []
    for _ in range(300):  # beyond what orjson encodes
        deep = [deep]
    writer = SqliteWriter(tmp_path / "db.sqlite3")
    try:
        results = writer.commit([[deployment("bad", {"x": deep})], [deployment("good", {"x": 1})]])
    finally:
        writer.close()
    assert isinstance(results[0], orjson.JSONEncodeError) and results[1] is None
    reader = SqliteReader(tmp_path / "db.sqlite3")
    try:
        assert [d.hash for d in reader.deployments()] == ["good"]
    finally:
        reader.close()
