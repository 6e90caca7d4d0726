"""What route handlers reach: the actor system and the settings, one object per app."""

from __future__ import annotations

import time

import attrs
from quart import Quart, current_app

from trioscope.actors.client import ClientLink, LiveCounters
from trioscope.config import Settings
from trioscope.runtime import ActorRef, ActorSystem, SupervisorRef

from ._metrics import Metrics

_KEY = "trioscope"


@attrs.frozen(kw_only=True)
class Services:
    system: ActorSystem
    settings: Settings
    agents: SupervisorRef
    """``/root/agents``: one actor per agent."""
    topology: ActorRef
    hub: ActorRef
    clients: SupervisorRef
    """``/root/clients``: one actor per WebSocket client."""
    live: LiveCounters
    links: set[ClientLink] = attrs.field(factory=set)
    """Open WebSocket connections (closed with 1001 when the server stops)."""
    metrics: Metrics
    started_monotonic: float = attrs.field(factory=time.monotonic)


def attach(app: Quart, value: Services) -> None:
    app.extensions[_KEY] = value


def services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions[_KEY]  # type: ignore[no-any-return]
