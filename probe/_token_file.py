"""The enrollment token read from a file (``--enrollment-token-file``).

A token given as a flag is in ``/proc/<pid>/cmdline``, which every local user
reads, for as long as the probe retries enrollment against a server that is
away; whoever reads it may enroll first and take the deployment's agent. A
file (or the environment, which only the process's user reads) keeps it
between the operator and the probe.
"""

from __future__ import annotations

from pathlib import Path

MAX_TOKEN_BYTES = 4096
"""Bytes a token file may hold: the server's tokens are at most 512
characters; a larger file is no token file, and is not read whole."""


class TokenFileError(ValueError):
    """The file cannot give a token; the message says why (for the flag's refusal)."""


def read_token_file(path: Path) -> str:
    """The token in ``path``, spaces and line ends around it left out.

    Raises:
        TokenFileError: the file cannot be read, is larger than
            ``MAX_TOKEN_BYTES``, is not UTF-8 text, or holds no token.
    """
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_TOKEN_BYTES + 1)
    except OSError as exc:
        raise TokenFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_TOKEN_BYTES:
        raise TokenFileError(f"{path} is larger than {MAX_TOKEN_BYTES} bytes: not an enrollment token")
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise TokenFileError(f"{path} is not UTF-8 text: not an enrollment token") from None
    if not token:
        raise TokenFileError(f"{path} is empty: it must hold the deployment's enrollment token")
    if any(c.isspace() for c in token):
        raise TokenFileError(f"{path} holds more than one word: it must hold the enrollment token alone")
    return token
