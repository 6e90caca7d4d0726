"""The edge of the store's disk room (``trioscope.store.DiskRoom``): while the
disk is short of room, what a client sends to be kept is refused (507) above a
small size, in one place for every path that stores it, so the server keeps
working for everyone."""

from __future__ import annotations

from ._errors import ApiError
from ._services import services


SMALL_RESULT = 64 * 1024
"""Bytes of a command report still taken while the disk is short of room
(``refuse_when_disk_short``): a command's outcome and a little of its output."""


def refuse_when_disk_short(size: int | None, small: int, what: str) -> None:
    """507 ``insufficient_storage`` for ``what`` (``size`` bytes, None: not
    known) over ``small`` while the embedded store's disk has less than
    ``storage.min_free_bytes`` free (``DiskRoom``): what is kept then is a
    command's outcome and a little of its output, the small writes that keep
    the server working for everyone; the rest waits for room. One place for
    every path that stores what a client sends (a result over HTTP or the
    agent socket, a command's parameters): the socket's results once went
    around it."""
    if services().disk_room.short() and (size is None or size > small):
        raise ApiError(507, "insufficient_storage", f"the server's disk is nearly full: {what} over "
                       f"{small // 1024} KiB cannot be kept now (storage.min_free_bytes); send it again later",
                       headers={"Retry-After": "60"})
