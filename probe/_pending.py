"""Final command reports not yet taken by the server, kept in the probe's state
directory until it has them: a result outlives a server that is away longer
than the report's retries, and a probe stopped (or killed) while it was
sending it. A probe that starts sends what it finds here first.

A report is written before its first attempt and removed once the server
answered it (taken, or refused for good: a command that timed out meanwhile);
files are small JSON bodies, written 0600 and renamed into place (a crash
leaves a whole file or none), at most ``MAX_KEPT`` of them.

The directory is used only if it is a directory of the probe's user, not a
symbolic link (``_own_directory``): its mode is set and its files deleted,
and through a link planted there root chmod'ed and pruned another directory.
A kept report is read only if it is a file of its own (not a link to one)."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("trioscope_probe")

MAX_KEPT = 64
"""Reports kept at once: a probe runs one command at a time (follows beside),
so more means reports of long ago that no server took; the oldest go."""
MAX_BYTES = 16 * 1024 * 1024
"""The largest report kept (a result's size is the engine's answer, bounded by the executor)."""


class PendingReports:
    """The directory ``directory`` of final reports waiting to be taken."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, command_id: str) -> Path:
        return self.directory / f"{hashlib.sha256(command_id.encode()).hexdigest()[:32]}.json"

    def keep(self, command_id: str, body: bytes) -> None:
        """Keep ``body`` (the report of ``command_id``) until ``taken``; on a
        disk that refuses, say so and go on: the report is still sent."""
        if len(body) > MAX_BYTES:
            return
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._own_directory(chmod=True)
            self._make_room()
            partial = self._path(command_id).with_suffix(".partial")
            partial.unlink(missing_ok=True)
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, self._path(command_id))
        except OSError as exc:
            log.warning("cannot keep the report of %s in %s (%s): it is lost if the probe stops before the "
                        "server takes it", command_id, self.directory, exc)

    def taken(self, command_id: str) -> None:
        try:
            self._path(command_id).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove the sent report of %s from %s (%s)", command_id, self.directory, exc)

    def waiting(self) -> list[Path]:
        """The reports kept, oldest first; what a write cut short left
        (``*.partial``) removed."""
        try:
            self._own_directory()
            for partial in self.directory.glob("*.partial"):
                partial.unlink(missing_ok=True)
            return sorted(self.directory.glob("*.json"), key=_age)[-MAX_KEPT:]
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("not sending the reports kept in %s (%s)", self.directory, exc)
            return []

    def read(self, path: Path) -> bytes | None:
        """A kept report (None: unreadable, or larger than a kept one may be, said and removed)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # not a link, a FIFO never waited on
            with os.fdopen(fd, "rb") as handle:
                status = os.fstat(handle.fileno())
                if not stat.S_ISREG(status.st_mode) or status.st_uid != os.geteuid():
                    log.warning("not reading the kept report %s: not a file of the probe's user", path)
                    return None
                if status.st_size > MAX_BYTES:
                    log.warning("removing the kept report %s: larger than %d bytes", path.name, MAX_BYTES)
                    path.unlink(missing_ok=True)
                    return None
                return handle.read(MAX_BYTES + 1)[:MAX_BYTES]
        except OSError as exc:
            log.warning("cannot read the kept report %s (%s)", path, exc)
            return None

    def _own_directory(self, *, chmod: bool = False) -> None:
        """Checks that the directory is one of the probe's user, not a symbolic
        link, and (``chmod``) makes it 0700: one made before, or by hand, and
        results may hold secrets. Through the open directory, never a link.

        Raises:
            OSError: it is not (or cannot be opened).
        """
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            owner = os.fstat(fd).st_uid
            if owner != os.geteuid():
                raise PermissionError(f"{self.directory} is owned by uid {owner}, not by the probe's user")
            if chmod:
                os.fchmod(fd, 0o700)
        finally:
            os.close(fd)

    def _make_room(self) -> None:
        files = sorted(self.directory.glob("*.json"), key=_age)
        for path in files[:max(0, len(files) - MAX_KEPT + 1)]:
            log.warning("dropping the kept report %s: %d are waiting already", path.name, MAX_KEPT)
            path.unlink(missing_ok=True)


def _age(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
