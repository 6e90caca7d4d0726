"""Which allocator serves Python's objects, and how ``trioscope serve`` gets it.

Why not Python's own (pymalloc): it takes memory in 1 MiB arenas and gives an
arena back only once every block in it is free. After thousands of WebSocket
clients left, a few long-lived blocks allocated meanwhile (tasks' suspended
frames, merged reports) pin arenas that are otherwise empty: RSS stayed 1.26x
its level before 2,000 clients came, 1.63x after 5,000 (bench/RESULTS.md).
With ``PYTHONMALLOC=malloc`` every object comes from the C allocator instead.
glibc's costs CPU and per-block headers. jemalloc has no headers and gives
back any free 4 KiB page after a delay (small objects live in slabs of a few
pages): after 2,600-4,350 clients left, RSS 1.06x its level before. mimalloc gives back
only whole 64 KiB pages, and kept 1.24x: it can be asked for, ``auto`` takes
jemalloc only (bench/RESULTS.md, "issue 17: allocator").

They are shared libraries that must be loaded before anything else
(``LD_PRELOAD``), and ``PYTHONMALLOC`` is read when the interpreter starts: so
the server re-executes itself once, with both set and ``MARKER`` naming the
allocator, which the second process sees and never re-executes again.

Everything here is pure (the environment, the libraries found and the ones
mapped in the process are passed in); ``_preload`` does the looking and the exec.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

import attrs


class Allocator(enum.Enum):
    """What allocates Python's objects."""

    PYMALLOC = "pymalloc"
    """Python's own, in 1 MiB arenas (the interpreter's default)."""
    MALLOC = "malloc"
    """glibc's malloc (``PYTHONMALLOC=malloc`` without a preloaded library)."""
    MIMALLOC = "mimalloc"
    JEMALLOC = "jemalloc"


GLIBC_SERVED = (Allocator.PYMALLOC, Allocator.MALLOC)
"""Allocators under which glibc's malloc serves what Python's does not (or all):
there, ``return_freed_memory`` trims glibc's heaps; mimalloc and jemalloc give
free pages back by themselves."""

REQUESTS = ("auto", "pymalloc", "mimalloc", "jemalloc")
"""Values of ``server.allocator``."""

PRELOADABLE = (Allocator.JEMALLOC, Allocator.MIMALLOC)
"""Allocators preloaded from a library."""

AUTO = (Allocator.JEMALLOC,)
"""Libraries ``auto`` looks for, preferred first: only those that met the
target of returning RSS to within 10% after clients left."""

LIBRARY_NAMES = {Allocator.MIMALLOC: "libmimalloc.so.2", Allocator.JEMALLOC: "libjemalloc.so.2"}
"""The file name of each library (Debian: libmimalloc2.0, libjemalloc2)."""

MARKER = "TRIOSCOPE_ALLOCATOR_PRELOADED"
"""Set in the re-executed process's environment: the allocator it was started with."""

TUNING: Mapping[Allocator, Mapping[str, str]] = {
    # mimalloc 2.0 decommits the free parts of its segments 500 ms after they
    # were freed (``segment_decommit_delay``) by default: nothing to set.
    Allocator.MIMALLOC: {},
    # jemalloc (5.3) purges free pages 10 s after they were freed, and only
    # when a thread allocates: its background thread purges on time, here 5 s
    # after (the 15 s measured after clients left cover it). muzzy_decay_ms:0
    # (its default, stated): straight to MADV_DONTNEED, not MADV_FREE, whose
    # pages RSS goes on counting until the kernel wants them. narenas:1: one
    # arena for all threads (reports are decoded in worker threads, each of
    # which would keep freed pages in an arena of its own; the GIL serialises
    # them anyway). slab_sizes: every small size class in one-page slabs (jemalloc
    # makes some 5-7 pages, so that they divide evenly): a long-lived object
    # allocated among thousands of clients' objects then keeps one page resident
    # once they are gone, not up to seven (RSS after 5,000 clients left: 1.11x ->
    # 1.10x its level before; CPU per report and listing within the noise).
    Allocator.JEMALLOC: {"MALLOC_CONF": "narenas:1,background_thread:true,dirty_decay_ms:5000,muzzy_decay_ms:0,"
                                        "slab_sizes:1-4096:1"},
}
"""Environment the library reads at start; a value already set is kept."""


@attrs.frozen(kw_only=True)
class Running:
    """The allocator of a running process."""

    allocator: Allocator
    library: str | None
    """Path of the preloaded library (mimalloc, jemalloc), else None."""


@attrs.frozen(kw_only=True)
class Plan:
    """What ``serve`` does about its allocator."""

    running: Running
    """The allocator of this process, as it is now."""
    reexec_env: Mapping[str, str] | None
    """The environment to re-execute with; None: go on in this process."""
    reason: str
    """Why, for the log."""


class AllocatorUnavailable(Exception):
    """An allocator was asked for by name and its library is not installed."""


def running(env: Mapping[str, str], mapped: Collection[str]) -> Running:
    """The allocator of a process with this environment and these files mapped
    (``/proc/self/maps``): a C allocator when ``PYTHONMALLOC`` is ``malloc``
    (or ``malloc_debug``), mimalloc or jemalloc if its library is mapped."""
    if not env.get("PYTHONMALLOC", "").startswith("malloc"):
        return Running(allocator=Allocator.PYMALLOC, library=None)
    for allocator in PRELOADABLE:
        stem = LIBRARY_NAMES[allocator].split(".so")[0] + ".so"
        for path in mapped:
            if path.rsplit("/", 1)[-1].startswith(stem):
                return Running(allocator=allocator, library=path)
    return Running(allocator=Allocator.MALLOC, library=None)


def preload_env(env: Mapping[str, str], allocator: Allocator, library: str) -> dict[str, str]:
    """``env`` with ``library`` preloaded for every object (first in
    ``LD_PRELOAD``, before what was there), its tuning, and ``MARKER``."""
    preloads = [library, *env.get("LD_PRELOAD", "").replace(":", " ").split()]
    return {**TUNING[allocator], **env, "LD_PRELOAD": " ".join(preloads), "PYTHONMALLOC": "malloc",
            MARKER: allocator.value}


def plan(requested: str, env: Mapping[str, str], found: Mapping[Allocator, str],
         mapped: Collection[str]) -> Plan:
    """What to do for ``server.allocator = requested`` (one of ``REQUESTS``).

    Args:
        requested: ``auto`` takes the first of ``AUTO`` found, else
            stays on pymalloc; a name takes that allocator or fails.
        env: this process's environment.
        found: path of each library installed (those missing are absent).
        mapped: paths of the files mapped in this process.

    Returns: the plan; ``reexec_env`` is set only when this process does not
    run the allocator wanted and was not re-executed already (``MARKER``):
    it never loops.

    Error handling: ``AllocatorUnavailable`` when mimalloc or jemalloc is
    asked for by name and not found (``auto`` falls back instead).
    """
    now = running(env, mapped)
    if requested not in REQUESTS:
        raise ValueError(f"unknown allocator {requested!r}: one of {', '.join(REQUESTS)}")
    if MARKER in env:
        wanted = env[MARKER]
        if now.allocator.value == wanted:
            return Plan(running=now, reexec_env=None, reason=f"preloaded: server.allocator {requested}")
        return Plan(running=now, reexec_env=None,
                    reason=f"re-executed for {wanted} but running {now.allocator.value}: not trying again")
    if requested == "auto":
        if "PYTHONMALLOC" in env:
            return Plan(running=now, reexec_env=None,
                        reason=f"auto: PYTHONMALLOC={env['PYTHONMALLOC']} set in the environment, left as it is")
        for allocator in AUTO:
            if allocator in found:
                return Plan(running=now, reexec_env=preload_env(env, allocator, found[allocator]),
                            reason=f"auto: {found[allocator]} found")
        names = " or ".join(LIBRARY_NAMES[a] for a in AUTO)
        return Plan(running=now, reexec_env=None,
                    reason=f"auto: no {names} installed, so Python's own allocator (memory of clients that left "
                    "may stay resident; Debian: apt-get install libjemalloc2)")
    wanted = Allocator(requested)
    if now.allocator is wanted:
        return Plan(running=now, reexec_env=None, reason=f"{requested} asked, already running")
    if wanted is Allocator.PYMALLOC:
        return Plan(running=now, reexec_env={**env, "PYTHONMALLOC": "pymalloc", MARKER: wanted.value},
                    reason="pymalloc asked")
    if wanted not in found:
        raise AllocatorUnavailable(
            f"server.allocator: {requested}: {LIBRARY_NAMES[wanted]} is not installed "
            f"(Debian: apt-get install {'libmimalloc2.0' if wanted is Allocator.MIMALLOC else 'libjemalloc2'})")
    return Plan(running=now, reexec_env=preload_env(env, wanted, found[wanted]), reason=f"{requested} asked")
