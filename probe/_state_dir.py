"""The probe's state directory (``--state-dir``), used only if no other user
can change what is in it.

The probe usually runs as root, and keeps there its agent credentials and the
final reports the server has not taken yet. A state directory another user can
write to (one under /tmp made world-writable, one they own, or a symbolic link
they point elsewhere) let a local user have root truncate a file and chmod or
delete files in another directory, and plant credentials the probe then used.
So the directory must be the effective user's own, writable by no one else,
not a symbolic link, and every directory above it (symbolic links resolved)
must be root's or the user's and writable by no one else, but for sticky ones
such as /tmp (where no user may rename or delete another's entries). What the
probe finds in it is checked too: credentials must be the user's own file,
unreadable by others (``private_file``).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

from ._executor import ControlError

MAX_STATE_FILE = 64 * 1024
"""Bytes of a credentials file read at most: it holds a few hundred."""


def trusted_state_dir(directory: Path) -> Path:
    """``directory`` (``~`` is the home directory), created 0700 if missing,
    with its symbolic links above it resolved (so that nothing can be swapped
    on the way to it later).

    Raises:
        ControlError: it, or a directory above it, is one another user could
            change (the message names ``--state-dir`` and what is wrong); or
            ``~`` with no home directory (a container's user: HOME unset and
            none in the password file), which was a traceback.
    """
    try:
        directory = directory.expanduser()
    except RuntimeError:
        raise ControlError(f"--state-dir {directory}: this user has no home directory (HOME is unset); give "
                           "--state-dir (or the env TRIOSCOPE_PROBE_STATE_DIR), on a volume that outlives the "
                           "probe: its credentials are there") from None
    try:
        if directory.is_symlink():
            # Followed only if no other user could have put it there or change
            # it: root's or this user's, in a directory only they may write (as
            # systemd's DynamicUser= StateDirectory=, a link into
            # /var/lib/private); where it leads is checked below as any path.
            link, place = directory.lstat(), directory.parent.resolve(strict=True)
            problem = (f"owned by uid {link.st_uid}" if link.st_uid not in (0, os.geteuid())
                       else _above_problem(place.lstat()))
            if problem is not None:
                where = "" if link.st_uid not in (0, os.geteuid()) else f" in {place}, which "
                raise ControlError(f"--state-dir {directory} is a symbolic link (to {os.readlink(directory)}) "
                                   f"{where}{problem}: give the directory itself")
        _make(directory)
        real = directory.resolve(strict=True)
        own = real.lstat()
    except OSError as exc:
        raise ControlError(f"cannot keep credentials in --state-dir {directory}: {exc}") from None
    problem = _own_directory_problem(own)
    if problem is not None:
        raise ControlError(f"--state-dir {directory} {problem}; the probe keeps its agent credentials there")
    for above in real.parents:
        try:
            status = above.lstat()
        except OSError as exc:
            raise ControlError(f"cannot keep credentials in --state-dir {directory}: {exc}") from None
        problem = _above_problem(status)
        if problem is not None:
            raise ControlError(f"--state-dir {directory}: {above}, above it, {problem}, so another user could "
                               "replace the state directory; choose one under directories only root or this "
                               "user can change")
    return real


def _make(directory: Path) -> None:
    """``directory`` and each missing directory above it made 0700, as the
    XDG base directories are (``mkdir(parents=True)`` gave those above it
    0777 less the umask: 0775 under a umask of 002, then refused as
    writable by the group)."""
    for level in [*reversed(directory.parents), directory]:
        if not level.exists():
            try:
                level.mkdir(mode=0o700)  # it holds agent tokens: the owner's only
            except FileExistsError:
                pass  # made meanwhile: checked as any other


def _writable_by_others(status: os.stat_result) -> bool:
    """Whether a directory another user could write to: writable by others,
    or by its group, unless that group is this user's own private group (a
    user private group, as Debian's and Fedora's: of the user's name, with no
    other member), where a umask of 002 makes directories 0775."""
    if status.st_mode & 0o002:
        return True
    if not status.st_mode & 0o020:
        return False
    return not (status.st_uid == os.geteuid() and _private_group(status.st_gid))


def _private_group(gid: int) -> bool:
    try:
        group, user = grp.getgrgid(gid), pwd.getpwuid(os.geteuid())
    except KeyError:
        return False
    return group.gr_name == user.pw_name and gid == user.pw_gid and not group.gr_mem


def _own_directory_problem(status: os.stat_result) -> str | None:
    """What is wrong with the state directory's own ``lstat``, if anything."""
    if not stat.S_ISDIR(status.st_mode):
        return "is not a directory"
    if status.st_uid != os.geteuid():
        return (f"is owned by uid {status.st_uid}, not by the user the probe runs as (uid {os.geteuid()}): "
                "give a directory of its own")
    if _writable_by_others(status):
        return (f"is writable by group or others (mode {stat.S_IMODE(status.st_mode):04o}): "
                "chmod 700 it, or give another")
    return None


def _above_problem(status: os.stat_result) -> str | None:
    """What is wrong with the ``lstat`` of a directory above the state directory, if anything."""
    if status.st_uid not in (0, os.geteuid()):
        return f"is owned by uid {status.st_uid}"
    if _writable_by_others(status) and not status.st_mode & stat.S_ISVTX:
        return f"is writable by group or others without the sticky bit (mode {stat.S_IMODE(status.st_mode):04o})"
    return None


def read_private_file(path: Path) -> bytes | None:
    """The bytes of ``path`` (at most ``MAX_STATE_FILE``), if it is a regular
    file of the effective user's that no one else may read or write; None if
    there is none.

    Raises:
        ControlError: it is a symbolic link, another user's, or open to others.
        OSError: it cannot be read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not hang the start
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if path.is_symlink():
            raise ControlError(f"{path} is a symbolic link: the probe reads only its own file there; "
                               "delete it (then enroll again)") from None
        raise exc
    with os.fdopen(fd, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise ControlError(f"{path} is not a regular file; delete it (then enroll again)")
        if status.st_uid != os.geteuid():
            raise ControlError(f"{path} is owned by uid {status.st_uid}, not by the user the probe runs as "
                               f"(uid {os.geteuid()}): not trusted; delete it (then enroll again)")
        if status.st_mode & 0o077:
            raise ControlError(f"{path} may be read or written by group or others "
                               f"(mode {stat.S_IMODE(status.st_mode):04o}): chmod 600 it, or delete it "
                               "(then enroll again)")
        return handle.read(MAX_STATE_FILE)
