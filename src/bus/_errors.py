"""What the bus raises to the rest of the server, apart from the client that
raises it: the HTTP edge and the report feed name these whether or not a bus
is configured, and nats-py is imported only where one is (``__init__``)."""

from __future__ import annotations


class BusUnavailable(Exception):
    """The bus did not take a report (not connected, or no acknowledgement in time)."""


class ReportTooLarge(Exception):
    """A report's envelope is larger than the NATS server takes in one message
    (its ``max_payload``): resending it changes nothing."""

    def __init__(self, size: int, limit: int | None, key: str = "nats-server max_payload") -> None:
        what = "the NATS server takes in one message (its max_payload)" if key == "nats-server max_payload" \
            else f"the stream takes in one message (its {key.rpartition(' ')[2]})"
        bound = f"the {limit} bytes " if limit is not None else ""
        super().__init__(f"the report's envelope is {size} bytes, more than {bound}{what}")
        self.size = size
        """The envelope's bytes, with the headers it is published with."""
        self.limit = limit
        """The limit (None: not known here)."""
        self.key = key
        """Where it is set: the server's ``max_payload``, or the stream's ``max_msg_size``."""
