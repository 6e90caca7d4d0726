"""Text the operating system gives the probe, made text a report can carry.

The kernel's strings (process names and command lines, user names, paths and
mount points, cgroups, the host name, interface names) are bytes in no
declared encoding. Python and psutil decode them with the file system
encoding (the locale's) and ``surrogateescape``: a byte that does not decode
becomes a lone surrogate (``\\udcff``), which no JSON encoder writes (one
process named with a byte that is not UTF-8 stopped the probe at its first
report, for good), and under a Latin-1 locale every UTF-8 name was decoded
byte by byte into mojibake (``İ`` sent as ``Ä°``). ``os_text`` gives such a
string's bytes back and reads them as UTF-8, what every current system
writes, showing a byte that is not UTF-8 as ``\\xff``.

Every string from psutil, the socket module or a /proc or /sys file goes
through it before it enters a report; what only the probe itself uses (an
interface's name looked up in /sys, a mount point asked its usage) is kept as
Python decoded it, which the OS takes back as the same bytes."""

from __future__ import annotations

import sys


def os_bytes(text: str) -> bytes:
    """The bytes the OS gave for ``text``, a string Python decoded from them
    (with the file system encoding, read now: tests change it). Text that
    encoding cannot have made (not the OS's) is taken as UTF-8, a lone
    surrogate written out as ``\\udcff``."""
    try:
        return text.encode(sys.getfilesystemencoding(), "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def os_text(raw: str | bytes) -> str:
    """``raw`` (bytes from the OS, or a string Python decoded from them) as
    valid text: its bytes read as UTF-8, each that is not shown as ``\\xff``.
    An ASCII string, nearly every one, is returned as it is."""
    if isinstance(raw, str):
        if raw.isascii():
            return raw
        raw = os_bytes(raw)
    return raw.decode("utf-8", "backslashreplace")
