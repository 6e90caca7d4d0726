"""A report's connections as read back from the report stream: kept as their
JSON and decoded the first time anything but their number is asked.

Every replica reads every report, and a host's report mostly has the shape of
its last one (``report_shape``: the same processes, containers and
connections, new metrics): the topology merges such a report without looking
at its connections (``refreshed``), and the probe's actor, the hub and the
metrics API want only how many there are (``host_metrics``). Decoding them
was most of reading a typical report back (200 connections: ~190 of ~300 us,
bench/RESULTS.md session 46); a report whose connections are read (a new
shape, a first report) pays what it paid before, once.

The JSON is copied out of the report's (each item is a slice of it), so a
report waiting to be merged holds its connections' bytes, not the whole
report's text. A connection the HTTP edge would not have taken (a replica
never publishes one, but anyone the NATS server lets publish can) fails when
read, naming where: the topology then leaves the report out
(``merge_failed``), as it does a report it cannot merge for any other reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import msgspec

from trioscope.wire import Connection

_DECODE = msgspec.json.Decoder(list[Connection])


class PendingConnections(Sequence[Connection]):
    """The connections of a report read back from the stream (see the module docstring)."""

    __slots__ = ("_count", "_json", "_decoded")

    def __init__(self, items: list[msgspec.Raw]) -> None:
        self._count = len(items)
        self._json: bytes = b"[" + b",".join(items) + b"]"
        self._decoded: list[Connection] | None = None

    def _items(self) -> list[Connection]:
        if self._decoded is None:
            try:
                self._decoded = _DECODE.decode(self._json)
            except msgspec.DecodeError as exc:
                raise ValueError(f"invalid network_info.connections on the report stream: {exc}") from None
            self._json = b""
        return self._decoded

    @property
    def decoded(self) -> bool:
        """Whether they were read (for the tests)."""
        return self._decoded is not None

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Connection: ...
    @overload
    def __getitem__(self, index: slice) -> list[Connection]: ...
    def __getitem__(self, index: int | slice) -> Connection | list[Connection]:
        return self._items()[index]

    def __iter__(self) -> Iterator[Connection]:
        return iter(self._items())

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, PendingConnections | list | tuple):
            return len(self) == len(other) and self._items() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # like the list it stands for

    def __repr__(self) -> str:
        return repr(self._items()) if self.decoded else f"<{self._count} connections, not read yet>"
