"""A PostgreSQL database of its own for each test that serves with ``--workers``
(more than one worker needs PostgreSQL), dropped afterwards."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

PG = ["psql", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c"]


def _psql(sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PG, sql], capture_output=True, text=True, timeout=60)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """``postgresql://postgres@127.0.0.1:5432/<a fresh database>``."""
    if shutil.which("psql") is None:
        pytest.skip("PostgreSQL is not installed (no psql): --workers above 1 needs a PostgreSQL store")
    name = f"trioscope_workers_{uuid.uuid4().hex[:12]}"
    created = _psql(f"CREATE DATABASE {name}")
    if created.returncode != 0:
        pytest.fail(f"PostgreSQL is installed but refused a test database: {created.stderr.strip()}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
