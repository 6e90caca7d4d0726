"""The server's token-signing secret, generated on first start into the data directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_FILE = "jwt-secret"
DATA_DIR_MODE = 0o700
"""Mode of a data directory this store creates: it holds the token secret, the
audit log and commands' parameters and results, for the server's user alone. A
directory that exists already keeps the mode its operator gave it."""


def load_or_create_secret(data_dir: Path) -> bytes:
    """The secret in ``data_dir/jwt-secret``, created (mode 0600, 48 random bytes,
    URL-safe text) if it does not exist yet.

    It is written to a file of its own first and then linked into place, which
    fails if the name exists: two processes starting at once agree on one
    secret, and a crash mid-write never leaves an empty one behind.

    Raises:
        ValueError: the file exists but holds less than a secret.
        OSError: the directory cannot be read or written.
    """
    create_data_dir(data_dir)
    path = data_dir / SECRET_FILE
    if not path.exists():
        secret = secrets.token_urlsafe(48).encode()
        partial = data_dir / f".{SECRET_FILE}.{os.getpid()}.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secret + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(partial, path)
                return secret
            except FileExistsError:
                pass  # another process was first: use its secret
        finally:
            partial.unlink(missing_ok=True)
    return _read_secret(path)


def create_data_dir(data_dir: Path) -> None:
    """Make ``data_dir`` (mode 0700; its parents with the default mode) unless it
    exists, which is left as it is.

    Raises:
        NotADirectoryError: it is a file (mkdir said only "File exists").
        OSError: it cannot be made.
    """
    try:
        data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(f"{data_dir} is a file, not a directory") from None


def token_secret(configured: str, data_dir: Path, *, create: bool = True) -> bytes:
    """The key of user tokens: the configured secret (``auth.secret``), else the
    one generated once into ``data_dir``.

    Args:
      create: generate the secret (and the directory) when there is none yet, as
        the server does when it starts. False (``token create``): refuse instead,
        since a mistyped directory would get a secret of its own and the token
        signed with it would be refused by the server.

    Raises:
        FileNotFoundError: ``create`` is False and ``data_dir`` or its secret does
          not exist; the message names which and what to do.
        NotADirectoryError: ``data_dir`` is a file.
        ValueError: the file exists but holds less than a secret.
        OSError: the directory cannot be read or written.
    """
    if configured:
        return configured.encode()
    if create:
        return load_or_create_secret(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise NotADirectoryError(f"{data_dir} is a file, not a directory")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"no data directory {data_dir}: give the server's data directory (the server "
                                f"creates it, with its {SECRET_FILE}, when it first starts)")
    path = data_dir / SECRET_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {SECRET_FILE} in the data directory {data_dir}: give the server's data "
                                f"directory, or start the server once with this one to generate it")
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    stored = path.read_bytes().strip()
    if len(stored) < 32:
        raise ValueError(f"{path} holds fewer than 32 bytes; delete it to generate a new secret")
    return stored


def open_to_others(path: Path) -> str | None:
    """What of the SQLite store at ``path`` and its directory other users of
    the machine may read or enter (``data (mode 0755), trioscope.sqlite3
    (mode 0644)``), or None: a store made by an earlier version kept the
    modes it was made with, and nothing said so."""
    found = []
    for each in (path.parent, path):
        try:
            mode = each.stat().st_mode & 0o777
        except OSError:
            continue
        if mode & 0o077:
            found.append(f"{each} (mode {mode:04o})")
    return ", ".join(found) or None


def store_lost(data_dir: Path, database: Path) -> str | None:
    """Why the SQLite store at ``database``, in ``data_dir``, looks lost (None:
    it does not): missing or empty beside the secret the server generated
    there, which it writes only once it has made its store. Started on, the
    server began empty and said nothing: every deployment 404, every agent
    401, while the users' tokens signed with the secret stayed valid."""
    secret = data_dir / SECRET_FILE
    try:
        if database.parent.resolve() != data_dir.resolve() or not secret.is_file():
            return None
        size = database.stat().st_size
    except FileNotFoundError:
        size = None
    except OSError:
        return None  # said by the checks that open it
    if size:
        return None
    what = "missing" if size is None else "empty"
    return (f"its database {database} is {what}, but its {SECRET_FILE} says a store was made here: restore the "
            f"database from a backup (or give --data-dir the right directory); to start anew on purpose, move "
            f"{secret} away too (the tokens signed with it would stay valid)")
