"""Idempotency keys of the requests that create a command: a client that sends
a creation again (after a 504 ``outcome_unknown``, or a connection that broke
before the answer came) with the same ``Idempotency-Key`` gets the first
request's answer, the same command, not a second one (a container restarted
twice). Pure: the caller passes the stored answer, the request and ``now``.

A key is one user's (tenant and user id): another user's same key is a key
of its own. It holds for ``WINDOW`` after the first request; within it, the
same key with another request (another path or body) is refused, not
answered with a command the client did not ask for.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Any

import attrs
import orjson

WINDOW = 24 * 3600.0
"""Seconds a key is kept after its request: a retry within it gets the first answer."""
MAX_KEY_LENGTH = 255
"""Characters of a key at most (printable ASCII)."""


class InvalidKey(ValueError):
    """A key that is empty, too long, or not printable ASCII; the message says which."""


def check_key(value: str) -> str:
    """``value`` if it is a key: 1 to ``MAX_KEY_LENGTH`` printable ASCII
    characters (space to tilde; a UUID, say). It is stored, so it is bounded.

    Raises:
        InvalidKey: it is not.
    """
    if not value:
        raise InvalidKey("must not be empty")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidKey(f"is {len(value)} characters, more than {MAX_KEY_LENGTH}")
    if not all(" " <= ch <= "~" for ch in value):
        raise InvalidKey("must be printable ASCII (space to ~), such as a UUID")
    return value


def fingerprint(method: str, path: str, body: Any) -> str:
    """What identifies a request for its key: its method, path and body as
    JSON with sorted keys (the same request sent again with its keys in
    another order, or other spaces, is the same request)."""
    digest = hashlib.sha256(f"{method} {path}\n".encode())
    digest.update(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


@attrs.frozen(kw_only=True)
class KeptAnswer:
    """A key as stored, with the answer of the request that created its command."""

    tenant: str
    user_id: str
    key: str
    fingerprint: str
    """Of the first request (``fingerprint``)."""
    command_id: str
    """The command it created."""
    status: int
    """The first answer's HTTP status."""
    body: bytes
    """The first answer's body, given again as it was."""
    created_at: float

    def expired(self, now: float) -> bool:
        """Its window is over: the key is free again (a new use replaces it)."""
        return now >= self.created_at + WINDOW


class Seen(enum.Enum):
    """What a request with a key is, given what is stored for the key."""

    NEW = "new"
    """No live answer for the key: the request is carried out (and its answer kept)."""
    REPEATED = "repeated"
    """The same request again: answered with the kept answer, nothing carried out."""
    REUSED = "reused"
    """Another request with a key still in use: refused."""


def seen(kept: KeptAnswer | None, request_fingerprint: str, now: float) -> Seen:
    """Whether a request (``request_fingerprint``) with a key is new, a
    repetition of the one ``kept`` answered, or another request reusing its key."""
    if kept is None or kept.expired(now):
        return Seen.NEW
    return Seen.REPEATED if kept.fingerprint == request_fingerprint else Seen.REUSED
