"""Room left on the disk of the embedded store (``storage.min_free_bytes``).

SQLite on a full disk fails every write (refused 507 then: ``store_full``).
Before it comes to that, what clients send to be kept is refused above a
small size while the disk has less than the minimum free
(``http._disk_room.refuse_when_disk_short``): agents' command results (each up to
``server.max_body_size``, at the agent's byte budget: two agents of one
tenant wrote ~190 MiB a minute, kept for the history retention) and new
commands' parameters; everything small goes on: the server stays up for
every tenant, and says why. PostgreSQL's disk is the database server's,
which it guards itself.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
import time
from pathlib import Path

from trioscope.config import format_size
from trioscope.domain.rates import Lull

from ._reader import Database, sqlite_path

log = logging.getLogger(__name__)

LOOK_EVERY = 2.0
"""Seconds a reading of the free space is used (``os.statvfs`` is cheap, not free)."""
WARN_EVERY = 60.0
"""Seconds between two warnings while the disk stays short of room."""


class DiskRoom:
    """The free space of the filesystem holding ``path``, read at most every ``LOOK_EVERY`` seconds."""

    def __init__(self, path: Path | None, minimum: int) -> None:
        self.path = path
        """A file or directory on the disk watched; None: nothing is watched (PostgreSQL)."""
        self.minimum = minimum
        """Bytes that must stay free; 0: nothing is watched."""
        self._read_at = -float("inf")
        self._free = 0
        self._warnings = Lull(WARN_EVERY)

    @classmethod
    def of(cls, database: Database, minimum: int) -> DiskRoom:
        """The room of ``database``'s disk: an SQLite file's; none watched for PostgreSQL."""
        return cls(sqlite_path(database), minimum)

    def short(self) -> bool:
        """Whether the disk has less than ``minimum`` free (warned in the log, once a minute)."""
        if self.path is None or not self.minimum:
            return False
        now = time.monotonic()
        if now - self._read_at >= LOOK_EVERY:
            self._read_at = now
            try:
                found = os.statvfs(self.path if self.path.is_dir() else self.path.parent)
            except OSError:
                return False  # not there yet (a store about to be created): nothing to say
            self._free = found.f_bavail * found.f_frsize
        if self._free >= self.minimum:
            return False
        if self._warnings.due(now) is not None:
            # In the setting's own units (MiB rounded 1KiB down to "0 MiB").
            log.warning("the disk of %s has %s free, less than storage.min_free_bytes (%s): command "
                        "results and new commands over their small sizes are refused (507) until room is made",
                        self.path, about(self._free), format_size(self.minimum),
                        extra={"event": "disk_short", "free_bytes": self._free, "minimum_bytes": self.minimum})
        return True

    @property
    def free(self) -> int:
        """Bytes free at the last reading."""
        return self._free


ROOM_PROBE_BYTES = 4096
"""Bytes ``room_refused`` writes: one block of most filesystems."""


def room_refused(directory: Path) -> bool:
    """Whether the disk of ``directory`` refuses a new block now for want of
    room (``ENOSPC``, or ``EDQUOT``: the user's quota), by writing a probe file
    there, removed at once. Asked after SQLite's ``disk I/O error`` of a write,
    which is the same for a failing disk and a quota (``store.NoRoom``):
    ``statvfs`` does not see a quota. Any other answer (written, or another
    error) is no want of room."""
    short = (errno.ENOSPC, errno.EDQUOT)
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".trioscope-room-")
    except OSError as exc:
        return exc.errno in short  # an inode is room too
    try:
        os.pwrite(fd, bytes(ROOM_PROBE_BYTES), 0)
    except OSError as exc:
        return exc.errno in short
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)
    return False


FULL = 2**20
"""Bytes free below which a disk counts as full when SQLite cannot even start."""


def about(size: int) -> str:
    """Bytes, rounded for a reader: ``512 B``, ``117.7 MiB``."""
    return f"{size} B" if size < 2**20 else f"{size / 2**20:.1f} MiB"


def disk_note(database: Database) -> str:
    """Why an SQLite store's disk may refuse it, as a note for a start's
    error line (SQLite says only ``disk I/O error`` on a full disk and
    ``unable to open database file`` on a read-only one): ``; its disk is
    full (N free)`` below ``FULL`` free, ``; its filesystem is read-only``,
    ``; its directory is not writable``, ``; PATH is not writable`` (the
    file, its ``-wal`` or ``-shm``); else empty."""
    path = sqlite_path(database)
    if path is None:
        return ""
    try:
        found = os.statvfs(path.parent)
    except OSError:
        return ""
    if found.f_flag & os.ST_RDONLY:
        return "; its filesystem is read-only"
    if not os.access(path.parent, os.W_OK):
        return "; its directory is not writable by this user"
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.exists() and not os.access(name, os.W_OK):  # a backup restored by another user (0644)
            return f"; {name} is not writable by this user (chown it to the user the server runs as)"
    free = found.f_bavail * found.f_frsize
    return f"; its disk is full ({about(free)} free)" if free < FULL else ""
