"""The server's token-signing secret, generated on first start into the data directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_FILE = "jwt-secret"


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
    data_dir.mkdir(parents=True, exist_ok=True)
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
    stored = path.read_bytes().strip()
    if len(stored) < 32:
        raise ValueError(f"{path} holds fewer than 32 bytes; delete it to generate a new secret")
    return stored


def token_secret(configured: str, data_dir: Path) -> bytes:
    """The key of user tokens: the configured secret (``auth.secret``), else the
    one generated once into ``data_dir``."""
    return configured.encode() if configured else load_or_create_secret(data_dir)
