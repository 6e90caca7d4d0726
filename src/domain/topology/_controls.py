"""Which container controls apply in which state: data on the node (id, label,
whether to ask for confirmation), delivered as a ``docker.<action>`` command to
the probe that reported the container."""

from __future__ import annotations

from typing import Any

_LABELS = {"start": "Start", "stop": "Stop", "restart": "Restart", "pause": "Pause", "unpause": "Resume",
           "remove": "Remove", "logs": "Logs", "exec": "Run command", "inspect": "Inspect"}
_CONFIRM = {"stop", "restart", "remove"}

_BY_STATE: dict[str, tuple[str, ...]] = {
    "running": ("stop", "restart", "pause", "logs", "exec", "inspect"),
    "paused": ("unpause", "stop", "logs", "inspect"),
    "restarting": ("stop", "logs", "inspect"),
    "created": ("start", "remove", "inspect"),
    "exited": ("start", "remove", "logs", "inspect"),
    "dead": ("remove", "logs", "inspect"),
    "removing": ("inspect",),
}

# One shared list per state: thousands of container nodes point at the same few.
CONTROLS: dict[str, list[dict[str, Any]]] = {
    state: [{"id": action, "label": _LABELS[action], "confirm": action in _CONFIRM} for action in actions]
    for state, actions in _BY_STATE.items()
}


def controls_for(state: str) -> list[dict[str, Any]]:
    """The controls a container in ``state`` offers (none for unknown states)."""
    return CONTROLS.get(state, [])


def allows(state: str, action: str) -> bool:
    return action in _BY_STATE.get(state, ())
