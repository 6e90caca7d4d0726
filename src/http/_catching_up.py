"""Topology reads of a replica that has not yet read the report stream to its
end: refused (503 ``catching_up``) rather than answered from an older, partial
state, one check for every route that reads the topology."""

from __future__ import annotations

from ._errors import ApiError
from ._services import services


CATCHING_UP_RETRY = "2"
"""Seconds a view asked of a replica still reading the report stream waits."""


def views_caught_up() -> None:
    """Refuse a topology read (views, nodes, an agent's reports and series, a
    live view) while this replica has not read the report stream to its end
    since it started: until then it holds an older, partial state (after a
    restart, a client moving to it would see the cluster go back in time).
    ``/health/ready`` says the same; a replica that caught up once answers
    from its last state even while the bus is away.

    Raises:
        ApiError: 503 ``catching_up`` with Retry-After and how far it is.
    """
    bus = services().bus
    if bus is None or bus.progress.caught_up:
        return
    progress = bus.progress
    where = ("not connected to the report bus yet" if not progress.connected
             else f"reading the report stream: {progress.lag} reports to go" if progress.lag is not None
             else "reading the report stream")
    raise ApiError(503, "catching_up", f"this replica is still rebuilding its topology ({where}); retry shortly "
                   "or ask another replica", details=progress.as_dict(), headers={"Retry-After": CATCHING_UP_RETRY})
