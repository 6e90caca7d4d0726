"""The side effects of ``_choice``: looking for the libraries, reading what the
process maps, re-executing it."""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

from ._choice import LIBRARY_NAMES, PRELOADABLE, Allocator, Plan, Running, plan, running

log = logging.getLogger("trioscope.allocator")


def library_dirs() -> list[Path]:
    """Where Debian, Fedora and a local build put shared libraries."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    dirs = [f"/usr/lib/{multiarch}", f"/lib/{multiarch}"] if multiarch else []
    return [Path(d) for d in (*dirs, "/usr/lib64", "/usr/lib", "/usr/local/lib")]


def find_libraries(dirs: Sequence[Path] | None = None) -> dict[Allocator, str]:
    """Path of each of mimalloc and jemalloc installed (first of ``dirs`` holding it)."""
    found: dict[Allocator, str] = {}
    for allocator in PRELOADABLE:
        for directory in library_dirs() if dirs is None else dirs:
            if (directory / LIBRARY_NAMES[allocator]).is_file():
                found[allocator] = str(directory / LIBRARY_NAMES[allocator])
                break
    return found


def mapped_files() -> set[str]:
    """Paths of the files mapped in this process (empty where there is no /proc)."""
    try:
        # Paths as the file system has them, bytes that are not UTF-8 too (a
        # data directory so named maps SQLite's -shm file: read strictly, the
        # server did not start).
        lines = os.fsdecode(Path("/proc/self/maps").read_bytes()).splitlines()
    except OSError:
        return set()
    return {fields[5] for fields in (line.split(maxsplit=5) for line in lines) if len(fields) == 6}


def current() -> Running:
    """This process's allocator."""
    return running(os.environ, mapped_files())


def plan_here(requested: str) -> Plan:
    """``plan`` for this process."""
    return plan(requested, os.environ, find_libraries(), mapped_files())


def reexec(env: Mapping[str, str]) -> None:
    """Replace this process by the same command line with ``env``. Returns
    only if that fails (after logging why): the caller goes on as it is."""
    argv = list(sys.orig_argv)
    log.debug("re-executing with %s=%s LD_PRELOAD=%s", "PYTHONMALLOC", env.get("PYTHONMALLOC"), env.get("LD_PRELOAD"))
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        os.execve(sys.executable, argv, dict(env))  # noqa: S606 - this same command line again, no shell wanted
    except OSError as exc:
        log.warning("could not re-execute with another allocator (%s): staying on %s", exc, current().allocator.value)
