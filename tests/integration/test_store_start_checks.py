"""Stores a server must refuse as it starts, in one line and exit code 1: a
database file it may read but not write (it printed Ready, then crash-looped
and exited with ~300 lines of tracebacks), and a database missing or empty
beside the secret generated with it (it started empty and said nothing)."""

from __future__ import annotations

import os
import subprocess
import shutil
import sys
from pathlib import Path

import pytest

from tests.server_process import run_cli
from trioscope.store import DATABASE_FILE, open_writer

SERVE = ["serve", "--host", "127.0.0.1", "--port", "0", "--local-probe", "false"]
NOBODY = 65534


def test_a_database_file_it_cannot_write_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    """Another user's file, 0644 (a backup restored by root under a server run
    as a service user). Run as root, the server is run without the
    capabilities that let root write any file."""
    database = tmp_path / DATABASE_FILE
    open_writer(database).close()
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv is not installed: root writes any file without it")
        os.chown(database, NOBODY, NOBODY)
        os.chmod(database, 0o644)
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
    else:
        os.chmod(database, 0o444)
    env = {**os.environ, "TRIOSCOPE_STORAGE_DATA_DIR": str(tmp_path), "TRIOSCOPE_AUTH_SECRET": "x" * 32}
    result = subprocess.run([*prefix, sys.executable, "-m", "trioscope", *SERVE], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot use the data directory {tmp_path}" in lines[0] and "readonly database" in lines[0], lines[0]
    assert f"{database} is not writable by this user" in lines[0], lines[0]
    assert "Ready" not in result.stdout


@pytest.mark.parametrize("what", ["missing", "empty"])
def test_a_database_lost_beside_its_secret_is_refused(tmp_path: Path, what: str) -> None:
    data = tmp_path / "data"
    env = {"TRIOSCOPE_STORAGE_DATA_DIR": str(data), "TRIOSCOPE_AUTH_SECRET": ""}
    data.mkdir()
    open_writer(data / DATABASE_FILE).close()
    (data / "jwt-secret").write_bytes(os.urandom(48))
    (data / DATABASE_FILE).unlink()
    if what == "empty":
        (data / DATABASE_FILE).touch()
    result = run_cli(SERVE, env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"its database {data / DATABASE_FILE} is {what}" in lines[0], lines[0]
    assert "restore the database from a backup" in lines[0] and f"move {data / 'jwt-secret'} away" in lines[0]
    assert (data / DATABASE_FILE).exists() is (what == "empty")  # nothing made by the refused start
