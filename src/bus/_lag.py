"""How far this replica has read the report stream: shared by the feed that
reads it and the edge that shows it (``/health/ready``, stats, ``/metrics``)."""

from __future__ import annotations

import attrs
import trio


@attrs.define
class BusProgress:
    connected: bool = False
    """Connected to the bus now."""
    merged: int = 0
    """Stream sequence of the last report handed to the topology here."""
    pending: int = 0
    """Reports on the stream this replica has not read yet (as of the last fetch)."""
    caught_up: bool = False
    """Read the stream to its end at least once since this process started: the
    topology and history are rebuilt. Until then the replica is not ready."""
    reconnects: int = 0
    consumer_restarts: int = 0
    """Times the stream reader was recreated (after a reconnection or a consumer the server dropped)."""
    skipped: int = 0
    """Messages on the stream that were not report envelopes (logged and left out)."""
    _advanced: trio.Event = attrs.field(factory=trio.Event, init=False, repr=False)

    def handed_on(self, sequence: int) -> None:
        """The feed handed the report of ``sequence`` to the roster here."""
        self.merged = sequence
        self._advanced.set()
        self._advanced = trio.Event()

    async def wait_handed_on(self, sequence: int, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until the report of ``sequence`` is
        handed to the roster here; whether it was."""
        with trio.move_on_after(timeout):
            while self.merged < sequence:
                await self._advanced.wait()
        return self.merged >= sequence

    def as_dict(self) -> dict[str, int | bool]:
        return {"connected": self.connected, "caught_up": self.caught_up, "merged_sequence": self.merged,
                "lag": self.pending, "reconnects": self.reconnects, "consumer_restarts": self.consumer_restarts,
                "skipped_messages": self.skipped}
