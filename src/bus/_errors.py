"""What the bus raises to the rest of the server, apart from the client that
raises it: the HTTP edge and the report feed name these whether or not a bus
is configured, and nats-py is imported only where one is (``__init__``)."""

from __future__ import annotations


class BusUnavailable(Exception):
    """The bus did not take a report (not connected, or no acknowledgement in time)."""


class ReportTooLarge(Exception):
    """A report's envelope is larger than the NATS server takes in one message
    (its ``max_payload``): resending it changes nothing."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the report's envelope is {size} bytes, more than the {limit} bytes the NATS server "
                         "takes in one message (its max_payload)")
        self.size = size
        """The envelope's bytes, with the headers it is published with."""
        self.limit = limit
        """The server's ``max_payload``."""
