"""The server's token-signing secret, generated on first start into the data directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_FILE = "jwt-secret"


def load_or_create_secret(data_dir: Path) -> bytes:
    """The secret in ``data_dir/jwt-secret``, created (mode 0600, 48 random bytes,
    URL-safe text) if it does not exist yet.

    Creation uses O_EXCL, so two processes starting at once agree on one secret.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes().strip()
        if len(secret) < 32:
            raise ValueError(f"{path} holds fewer than 32 bytes; delete it to generate a new secret") from None
        return secret
    secret = secrets.token_urlsafe(48).encode()
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return secret


def token_secret(configured: str, data_dir: Path) -> bytes:
    """The key of user tokens: the configured secret (``auth.secret``), else the
    one generated once into ``data_dir``."""
    return configured.encode() if configured else load_or_create_secret(data_dir)
