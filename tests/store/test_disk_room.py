"""What a server says of its SQLite store's disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from trioscope.store import disk_note


class _Found:
    def __init__(self, free: int, flag: int = 0) -> None:
        self.f_bavail, self.f_frsize, self.f_flag = free, 1, flag


@pytest.mark.parametrize(("free", "note"), [(0, "; its disk is full (0 B free)"),
                                            (4096, "; its disk is full (4096 B free)"), (2**30, "")])
def test_a_full_disk_is_named_where_sqlite_says_only_disk_io_error(monkeypatch: Any, tmp_path: Path, free: int,
                                                                   note: str) -> None:
    """Started on a full disk, SQLite cannot make its shared-memory file and
    says "disk I/O error": the start's one line says the disk is full."""
    monkeypatch.setattr(os, "statvfs", lambda path: _Found(free))
    assert disk_note(tmp_path / "trioscope.sqlite3") == note


def test_postgresql_has_no_disk_of_ours() -> None:
    assert disk_note("postgresql://h/db") == ""


def test_a_read_only_filesystem_is_named_where_sqlite_says_only_unable_to_open(monkeypatch: Any,
                                                                               tmp_path: Path) -> None:
    monkeypatch.setattr(os, "statvfs", lambda path: _Found(2**30, os.ST_RDONLY))
    assert disk_note(tmp_path / "trioscope.sqlite3") == "; its filesystem is read-only"
