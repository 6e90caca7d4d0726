"""Which database ``store.database`` names, and how messages name it."""

from __future__ import annotations

from pathlib import Path

import pytest

from trioscope.store import DATABASE_FILE, describe_database, resolve_database


def test_empty_is_sqlite_in_the_data_directory_and_urls_name_their_backend(tmp_path: Path) -> None:
    assert resolve_database("", tmp_path) == tmp_path / DATABASE_FILE
    assert resolve_database(f"sqlite:{tmp_path}/other.db", tmp_path) == tmp_path / "other.db"
    assert resolve_database("sqlite:~/x.db", tmp_path) == Path.home() / "x.db"
    url = "postgresql://kim:pw@db.example:5433/trioscope?options=-c%20search_path%3Dts"
    assert resolve_database(url, tmp_path) == url
    assert resolve_database("postgres://db/x", tmp_path) == "postgres://db/x"
    with pytest.raises(ValueError, match="names no known database"):
        resolve_database("mysql://db/x", tmp_path)


def test_a_database_is_described_without_its_password(tmp_path: Path) -> None:
    assert describe_database(tmp_path / "a.db") == str(tmp_path / "a.db")
    assert describe_database("postgresql://kim:pw-secret@db.example:5433/trioscope") == \
        "postgresql://db.example:5433/trioscope"
    assert describe_database("postgresql://db.example/trioscope") == "postgresql://db.example:5432/trioscope"


def test_an_ipv6_host_keeps_its_brackets() -> None:
    """``postgresql://::1:5432/test`` read as a host of ``::1:5432``."""
    assert describe_database("postgresql://[::1]:5432/test") == "postgresql://[::1]:5432/test"
    assert describe_database("postgresql://[2001:db8::7]/t") == "postgresql://[2001:db8::7]:5432/t"
