"""What the bus raises to the rest of the server, apart from the client that
raises it: the HTTP edge and the report feed name these whether or not a bus
is configured, and nats-py is imported only where one is (``__init__``)."""

from __future__ import annotations


class BusUnavailable(Exception):
    """The bus did not take a report (not connected, or no acknowledgement in time)."""


class ReportTooLarge(Exception):
    """A report's envelope is larger than the NATS server takes in one message
    (its ``max_payload``): resending it changes nothing."""

    def __init__(self, size: int, limit: int | None, stream: str | None = None) -> None:
        what = ("the NATS server takes in one message (its max_payload)" if stream is None
                else "the stream takes in one message (its max_msg_size)")
        bound = f"the {limit} bytes " if limit is not None else ""
        super().__init__(f"the report's envelope is {size} bytes, more than {bound}{what}")
        self.size = size
        """The envelope's bytes, with the headers it is published with."""
        self.limit = limit
        """The limit (None: not known here)."""
        self.stream = stream
        """The stream whose ``max_msg_size`` refused it; None: the server's ``max_payload``."""

    @property
    def setting(self) -> str:
        """The setting to raise."""
        return "max_payload" if self.stream is None else "max_msg_size"

    @property
    def key(self) -> str:
        """Where that setting is: ``nats-server max_payload``, ``stream <name> max_msg_size``."""
        return "nats-server max_payload" if self.stream is None else f"stream {self.stream} max_msg_size"
