"""Point-in-time statistics of the supervision tree (``ActorSystem.snapshot``)."""

from __future__ import annotations

from typing import Union

import attrs


@attrs.frozen(kw_only=True)
class ActorStats:
    """One actor's counters."""

    path: str
    """Where it lives in the tree, e.g. ``/root/topology``."""
    actor_type: str
    """Class name of the actor object."""
    status: str
    """``running``, ``restarting``, ``stopping``, ``stopped`` or ``terminated``."""
    restarts: int
    """Times this actor has been restarted."""
    processed: int
    """Messages handled without raising, over all incarnations."""
    failed: int
    """Crashes: messages (or hooks, or background tasks) that raised."""
    dead_letters: int
    """Messages addressed to it that no incarnation will ever handle."""
    mailbox_depth: int
    """Messages queued right now."""
    mailbox_capacity: int
    """Most messages the mailbox accepts before ``MailboxFull``."""
    mailbox_high_water: int
    """Most messages ever queued at once."""
    kind: str = "actor"


@attrs.frozen(kw_only=True)
class SupervisorStats:
    """A supervisor and, recursively, its children."""

    path: str
    strategy: str
    """``one_for_one``, ``one_for_all`` or ``rest_for_one``."""
    status: str
    restarts: int
    """Times this supervisor itself has been restarted by its parent."""
    children: tuple[Union[ActorStats, SupervisorStats], ...]
    kind: str = "supervisor"


@attrs.frozen(kw_only=True)
class SystemStats:
    """The whole tree plus system-wide counters."""

    root: SupervisorStats
    dead_letters: int
    """Messages that reached no actor, over the system's life."""
    dead_letters_by_type: dict[str, int]
    """The same, by the actor type they were addressed to."""
    restarts_by_type: dict[str, int]
    """Restarts over the system's life, by actor type (``supervisor`` for supervisors)."""
    actors: int
    """Live actors in the tree."""
