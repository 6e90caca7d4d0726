"""The data directory and the SQLite database are the server user's alone: they
hold the token secret, the audit log and every command's parameters and results.
What the store creates is private whatever the umask; what an operator made
keeps its mode."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_process import ServerProcess
from trioscope.store import DATABASE_FILE, SqliteReader, SqliteWriter, load_or_create_secret, token_secret


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_its_wal_and_its_directory_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "parent" / "data"
    writer = SqliteWriter(data_dir / DATABASE_FILE)
    try:
        writer.connection.execute("CREATE TABLE probe_write (a)")  # makes SQLite open its -wal and -shm
        writer.connection.execute("INSERT INTO probe_write VALUES (1)")
        assert mode(data_dir) == 0o700
        assert mode(tmp_path / "parent") == 0o755  # parents are not the data directory
        for name in (DATABASE_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm"):
            assert mode(data_dir / name) == 0o600, name
    finally:
        writer.close()


def test_a_reader_that_opens_first_creates_the_database_private_too(tmp_path: Path) -> None:
    reader = SqliteReader(tmp_path / "data" / DATABASE_FILE)
    reader.close()
    assert mode(tmp_path / "data") == 0o700
    assert mode(tmp_path / "data" / DATABASE_FILE) == 0o600


def test_the_secret_creates_a_private_data_directory(tmp_path: Path) -> None:
    load_or_create_secret(tmp_path / "data")
    assert mode(tmp_path / "data") == 0o700
    assert mode(tmp_path / "data" / "jwt-secret") == 0o600


def test_an_operators_directory_and_database_keep_their_modes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o750)
    (data_dir / DATABASE_FILE).touch(mode=0o640)
    SqliteWriter(data_dir / DATABASE_FILE).close()
    load_or_create_secret(data_dir)
    assert mode(data_dir) == 0o750
    assert mode(data_dir / DATABASE_FILE) == 0o640


def test_the_secret_can_be_required_to_exist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"^no data directory {re.escape(str(tmp_path / 'missing'))}: "):
        token_secret("", tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(FileNotFoundError, match=f"^no jwt-secret in the data directory {re.escape(str(tmp_path))}: "):
        token_secret("", tmp_path, create=False)
    assert list(tmp_path.iterdir()) == []
    secret = load_or_create_secret(tmp_path)
    assert token_secret("", tmp_path, create=False) == secret
    assert token_secret("configured-" * 4, tmp_path / "missing", create=False) == b"configured-" * 4


def test_a_server_on_a_store_others_may_read_says_so_once_as_it_starts(tmp_path: Path) -> None:
    """Stores made by earlier versions kept 0755 and 0644 (every local user
    could read the audit log and every command's results), and nothing said so."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    (data_dir / DATABASE_FILE).touch(mode=0o644)
    with ServerProcess(["--local-probe", "false"], env={"TRIOSCOPE_STORAGE_DATA_DIR": str(data_dir)}) as server:
        log = server.stderr()
    warnings = [line for line in log.splitlines() if "other users of this machine may read the store" in line]
    assert len(warnings) == 1, log
    assert f"{data_dir} (mode 0755), {data_dir / DATABASE_FILE} (mode 0644)" in warnings[0]
    assert f"chmod 700 {data_dir}; chmod 600 {data_dir / DATABASE_FILE}*" in warnings[0]
    os.chmod(data_dir, 0o700)
    os.chmod(data_dir / DATABASE_FILE, 0o600)
    with ServerProcess(["--local-probe", "false"], env={"TRIOSCOPE_STORAGE_DATA_DIR": str(data_dir)}) as server:
        assert "may read the store" not in server.stderr()
