"""The machine's PostgreSQL for tests: 127.0.0.1:5432, trust auth, user
postgres, database ``test``. Started (as ``.ci/run`` would) when it is
installed but not running; each test gets a schema of its own, dropped after.

The cluster is the machine's service, shared by every test session running at
the same time, so a session that started it leaves it running.
"""

from __future__ import annotations

import functools
import re
import secrets
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tests.left_behind import LEFT_AFTER, left_behind

BASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
POSTGRES_ENV = "TRIOSCOPE_TEST_POSTGRES"
"""Set (to the base URL) while integration tests run on PostgreSQL: every
``ServerProcess`` gets a schema (tests/server_process.py)."""
SCHEMA_PREFIX_ENV = "TRIOSCOPE_TEST_SCHEMA_PREFIX"
"""The prefix of those schemas' names, one per test module: dropped together at its end."""
START_TIMEOUT = 60.0
_DATED = re.compile(r"(?:t|it)_(\d{10})_[0-9a-f]+_?(?:[0-9a-f]{12})?")
"""A test schema's name (``schema_name``): its kind, when it was made, a random part (and a server's own part)."""


class PostgresMissing(RuntimeError):
    """PostgreSQL is not installed here (no ``pg_ctlcluster`` or ``psql``)."""


def _answers() -> bool:
    try:
        with psycopg.connect(BASE_URL, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def ensure_running() -> str:
    """The base URL of a running server, started if it was not.

    Raises:
        PostgresMissing: it is not installed (the caller skips).
        RuntimeError: it is installed but does not start.
    """
    if shutil.which("pg_ctlcluster") is None or shutil.which("psql") is None:
        raise PostgresMissing("PostgreSQL is not installed (no pg_ctlcluster/psql): the PostgreSQL tests need it")
    if not _answers():
        _start()
    _forget_left_once()
    return BASE_URL


@functools.cache
def _forget_left_once() -> None:
    forget_left_schemas(BASE_URL)


def _start() -> None:
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir()) if Path("/etc/postgresql").is_dir() else []
    if not versions:
        raise RuntimeError("PostgreSQL is installed but has no cluster in /etc/postgresql")
    started = subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
                             capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers():
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not start ({started.returncode}): {started.stderr[-500:]}")
        time.sleep(0.2)


def schema_name(kind: str) -> str:
    """A new test schema's name (``t``: one test's, ``it``: the prefix of a
    module's servers' schemas): with when it was made, so that a later run
    can tell one a killed run left (``forget_left_schemas``)."""
    return f"{kind}_{int(time.time())}_{secrets.token_hex(6 if kind == 't' else 4)}"


def forget_left_schemas(base_url: str, older_than: float = LEFT_AFTER) -> list[str]:
    """Drop the test schemas (``schema_name``) made more than ``older_than``
    seconds ago (``tests.left_behind``), with every table the servers made
    in them. Returns their names."""
    with psycopg.connect(base_url, autocommit=True) as db:
        names = [name for (name,) in db.execute("SELECT nspname FROM pg_namespace ORDER BY nspname")]
    left = [name for name in names
            if (match := _DATED.fullmatch(name)) and left_behind(int(match.group(1)), older_than)]
    for name in left:
        try:
            drop_schema(base_url, name)
        except psycopg.Error:
            pass  # another process of the run dropped it first
    return left


def in_schema(base_url: str, schema: str) -> str:
    """``base_url`` with ``schema`` as every connection's search path."""
    options = urllib.parse.quote(f"-c search_path={schema}")
    return f"{base_url}?options={options}"


def with_lock_timeout(url: str, wait: str, setting: str = "lock_timeout") -> str:
    """``url`` with ``lock_timeout`` (or another ``setting``) set to ``wait`` on
    every connection (the server keeps a URL's own): a table locked by a test
    refuses its reads sooner than the server's default ``LOCK_TIMEOUT``."""
    option = urllib.parse.quote(f"-c {setting}={wait} ")
    if "options=" in url:  # a schema's search_path is given as options already
        return url.replace("options=", f"options={option}", 1)
    return f"{url}{'&' if '?' in url else '?'}options={option}"


def create_schema(base_url: str, schema: str) -> None:
    with psycopg.connect(base_url, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")


def drop_schema(base_url: str, schema: str) -> None:
    with psycopg.connect(base_url, autocommit=True) as db:
        db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def drop_schemas(base_url: str, prefix: str) -> None:
    """Every schema whose name starts with ``prefix``."""
    with psycopg.connect(base_url, autocommit=True) as db:
        names = [name for (name,) in db.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)",
                                                (prefix,))]
    for name in names:
        drop_schema(base_url, name)


@contextmanager
def scratch_schema(base_url: str) -> Iterator[str]:
    """A URL whose connections work in a new, empty schema, dropped (with
    everything in it) when the block ends."""
    schema = schema_name("t")
    create_schema(base_url, schema)
    try:
        yield in_schema(base_url, schema)
    finally:
        drop_schema(base_url, schema)
