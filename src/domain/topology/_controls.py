"""Which container controls apply in which state: data on the node (id, label,
whether to ask for confirmation), delivered as a ``docker.<action>`` command to
the probe that reported the container.

What a control may be asked for follows three things, checked in this order
by the control endpoint: that it is a control at all (``ACTIONS``), that the
agent that would run it allows it (``allowed_actions``, from the capabilities
it enrolled with), that the container's state offers it (``allows``); and its
parameters are checked as the probe checks them (``parameter_problem``), so
that a bad one is refused when asked rather than failed by the agent."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

_LABELS = {"start": "Start", "stop": "Stop", "restart": "Restart", "pause": "Pause", "unpause": "Resume",
           "remove": "Remove", "logs": "Logs", "exec": "Run command", "inspect": "Inspect"}
_CONFIRM = {"stop", "restart", "pause", "remove"}
"""Controls the UI asks to confirm: those that stop or freeze what the container serves, or lose it."""
ACTIONS: tuple[str, ...] = tuple(sorted(_LABELS))
"""Every container control (``docker.<action>`` on the probe), sorted."""

PROBE_VERSION = "trioscope-probe"
"""The ``agent_version`` a trioscope probe enrolls with (probe/_agent.py): its
capabilities are exactly its ``--allow`` list, an empty one included."""

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


def allowed_actions(capabilities: Iterable[str], version: str | None = None) -> frozenset[str] | None:
    """The controls an enrolled agent runs, from the capabilities it enrolled
    with: the actions of its ``docker.<action>`` entries (a trioscope probe
    enrolls with its ``--allow`` list: ``docker.logs,docker.inspect``). None
    (every control) for an agent that names none of them and is no trioscope
    probe: one that states its capabilities otherwise (the seed's ``docker``,
    ``restart``) decides for itself what it runs."""
    named = frozenset(action for capability in capabilities
                      if (action := capability.removeprefix("docker.")) != capability and action in _LABELS)
    return named if named or version == PROBE_VERSION else None


def controls_for(state: str, allowed: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """The controls a container in ``state`` offers (none for unknown states),
    those of ``allowed`` only (None: all of them)."""
    if allowed is None:
        return CONTROLS.get(state, [])
    return _restricted(state, allowed)


@functools.cache
def _restricted(state: str, allowed: frozenset[str]) -> list[dict[str, Any]]:
    # Shared as CONTROLS are: few states times the few --allow lists in use.
    return [control for control in CONTROLS.get(state, []) if control["id"] in allowed]


def allows(state: str, action: str) -> bool:
    """Whether a container in ``state`` offers ``action``."""
    return action in _BY_STATE.get(state, ())


Check = tuple[str, Callable[[Any], bool]]
"""What a parameter must be (for the error), and whether a value is that."""


def _integer(low: int, high: int) -> Check:
    def check(value: Any) -> bool:
        return type(value) is int and low <= value <= high
    return f"must be an integer from {low} to {high}", check


def _argv(value: Any) -> bool:
    return (isinstance(value, list) and 0 < len(value) <= 256 and all(isinstance(a, str) for a in value))


_BOOLEAN: Check = ("must be true or false", lambda value: type(value) is bool)
# The parameters each control takes, with the bounds the probe checks them
# against (probe/_executor.py, probe/_follow.py): name -> (what it must be, check).
_PARAMETERS: dict[str, dict[str, Check]] = {
    "stop": {"timeout": _integer(0, 600)},
    "restart": {"timeout": _integer(0, 600)},
    "remove": {"force": _BOOLEAN},
    "logs": {"tail": _integer(1, 10_000), "follow": _BOOLEAN},
    "exec": {"argv": ("must be a non-empty list of at most 256 strings (no shell is involved)", _argv)},
}
_REQUIRED: dict[str, tuple[str, ...]] = {"exec": ("argv",)}
_FOLLOW_TAIL = _integer(0, 10_000)
"""A followed log may start from no earlier line at all."""


def parameter_problem(action: str, parameters: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first of ``parameters`` that the probe would refuse for ``action``,
    as (its name, what it must be); None if it would take them all. Only the
    parameters the action takes are looked at: the probe ignores others."""
    for name in _REQUIRED.get(action, ()):
        if name not in parameters:
            return name, "is required"
    known = _PARAMETERS.get(action, {})
    followed = action == "logs" and parameters.get("follow") is True
    for name, rule in known.items():
        if name not in parameters:
            continue
        expected, check = _FOLLOW_TAIL if followed and name == "tail" else rule
        if not check(parameters[name]):
            return name, expected
    return None
