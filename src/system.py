"""The supervision tree of a trioscope server, in one readable place.

Children start in this order and stop in the reverse order, so an actor may
rely on every actor above it while it starts, runs and drains its mailbox.
"""

from __future__ import annotations

from trioscope.config import Settings
from trioscope.runtime import Strategy, SupervisorSpec


def supervision_tree(settings: Settings) -> SupervisorSpec:
    """The root supervisor and its children for these settings."""
    del settings  # used as the tree grows (topology, agents, hub, command queues)
    return SupervisorSpec(name="root", strategy=Strategy.ONE_FOR_ONE, children=[])
