"""A PostgreSQL cluster of the test's own (initdb in a temporary directory, a
free port), for tests whose fault is stopping the database server: never the
machine's cluster on 5432, which other tests and sessions share.

Run as root, the cluster runs as the ``postgres`` user (PostgreSQL refuses
root); every server started here is stopped by its data directory's pid.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.free_port import free_port

TIMEOUT = 120


class OwnPostgresMissing(RuntimeError):
    """No ``initdb``/``pg_ctl`` here."""


def _bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise OwnPostgresMissing("PostgreSQL's server programs are not installed (/usr/lib/postgresql/*/bin)")
    return Path(found[-1]).parent


class OwnPostgres:
    """One cluster: ``url`` (database ``postgres``, trust auth), ``stop()`` the fault, ``start()`` again."""

    def __init__(self, root: Path) -> None:
        self.bin = _bin()
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        command = [str(self.bin / argv[0]), *argv[1:]]
        as_user = os.geteuid() == 0
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False,
                                user="postgres" if as_user else None, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed ({result.returncode}): {result.stderr[-800:]}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: as a crash (clients' connections cut, no goodbye)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False


@contextmanager
def own_cluster() -> Iterator[OwnPostgres]:
    """A running cluster of its own, stopped and removed at the end.

    Raises:
        OwnPostgresMissing: PostgreSQL's server programs are not installed (the caller skips).
    """
    bin_dir = _bin()  # OwnPostgresMissing before anything is made
    assert bin_dir.is_dir()
    root = Path(tempfile.mkdtemp(prefix="trioscope-pg-"))
    try:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
        cluster = OwnPostgres(root)
        cluster.init()
        cluster.start()
        try:
            yield cluster
        finally:
            if cluster.running():
                cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL cluster of the test's own, which the test may stop and start;
    skipped, saying why, where PostgreSQL is not installed. (Import it into a test module.)"""
    try:
        with own_cluster() as cluster:
            yield cluster
    except OwnPostgresMissing as exc:
        pytest.skip(str(exc))
