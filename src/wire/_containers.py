"""Which container a process belongs to, from the text of ``/proc/<pid>/cgroup``.

Each runtime names its cgroups differently; what they share is a 64-hex-digit
container id as one component of the path (the innermost one, for nested
containers):

* Docker: ``/docker/<id>`` or (systemd driver) ``/system.slice/docker-<id>.scope``
* Podman / libpod: ``/libpod_parent/libpod-<id>`` or ``/machine.slice/libpod-<id>.scope``
  (``.../container`` below it with split cgroups); a pod's containers
  ``/libpod_parent/<pod id>/libpod-<id>`` or
  ``/machine.slice/machine-libpod_pod_<pod id>.slice/libpod-<id>.scope``
* containerd: ``/system.slice/containerd.service/.../<id>`` or ``cri-containerd-<id>.scope``
* CRI-O: ``crio-<id>.scope``
* Kubernetes (any runtime): ``/kubepods/.../pod<uid>/<id>`` or
  ``/kubepods.slice/.../kubepods-...-pod<uid>.slice/<runtime>-<id>.scope``

Not containers, though their paths carry an id: the engines' monitors
(Podman's and CRI-O's ``conmon``: ``libpod-conmon-<id>.scope``,
``crio-conmon-<id>.scope``, ``/libpod_parent/conmon`` and, in a pod under the
cgroupfs manager, ``/libpod_parent/<pod id>/conmon``), and a Podman pod's own
cgroup (``/libpod_parent/<pod id>``), which holds containers but is none: read
as one, a pod's conmon became a made-up container that took the pod's
published port from its app.

Here and not in the probe because the server reads the same field: a status
agent sends a process's ``cgroup`` without its ``container_id``, and the
topology (and the memory budget) infer the container from it. One reading of
the report's ``cgroup`` field, for whoever fills it in or reads it.
"""

from __future__ import annotations

import re

from ._models import ProcessInfo

_ANY_ID = re.compile(r"[0-9a-f]{64}")
_CONTAINER = re.compile(r"(?:[\w.-]*-)?([0-9a-f]{64})(?:\.scope)?")
"""A path component naming a container: its id, bare or after the runtime's
prefix (``docker-``, ``libpod-``, ``cri-containerd-``, ...)."""
_MONITOR = re.compile(r"(?:[\w.-]*-)?conmon(?:-[0-9a-f]{64})?(?:\.scope)?")
"""A path component of an engine's container monitor (conmon), which runs
beside its container, not in it."""
_POD_PARENT = "libpod_parent"
"""Podman's cgroupfs parent: a bare id right below it is a pod's cgroup (its
containers are ``libpod-<id>``)."""


def _container_in(path: str) -> str | None:
    """The innermost container id the cgroup ``path`` names; None outside
    containers and in an engine's monitor."""
    if _ANY_ID.search(path) is None:
        return None  # most processes, in no container: one search, no split
    found = None
    parent = ""
    for part in path.split("/"):
        if _MONITOR.fullmatch(part):
            return None
        match = _CONTAINER.fullmatch(part)
        if match and not (parent == _POD_PARENT and part == match[1]):
            found = match[1]  # the innermost id wins (nested containers)
        parent = part
    return found


def _is_monitor_or_pod(path: str) -> bool:
    """Whether ``path`` is a monitor's or a Podman pod's own cgroup (no
    container, though an older reading found one in it)."""
    parts = path.split("/")
    if any(_MONITOR.fullmatch(part) for part in parts):
        return True
    return len(parts) >= 2 and parts[-2] == _POD_PARENT and _CONTAINER.fullmatch(parts[-1]) is not None


def container_id_from_cgroup(text: str) -> str | None:
    """The container id in a ``/proc/<pid>/cgroup`` text (v1 or v2), or None for
    processes outside containers (and for the engines' monitors: conmon)."""
    for line in text.splitlines():
        found = _container_in(line.rpartition(":")[2])
        if found:
            return found
    return None


def _outside_containers(text: str) -> bool:
    """Whether a ``/proc/<pid>/cgroup`` text names an engine's monitor's or a
    Podman pod's own cgroup."""
    return any(_is_monitor_or_pod(line.rpartition(":")[2]) for line in text.splitlines())


class ContainerIds:
    """Resolves the ids processes carry (full, short, or from cgroups) to the
    ids the container engine reported."""

    def __init__(self, known: list[str]) -> None:
        self.known = set(known)
        self._by_prefix = {k[:12]: k for k in known}

    def resolve(self, process: ProcessInfo) -> str | None:
        """The id of the container ``process`` runs in, as the engine reported
        it where it did; None outside containers."""
        raw = process.container_id or (container_id_from_cgroup(process.cgroup) if process.cgroup else None)
        if not raw:
            return None
        if raw in self.known:
            return raw
        full = self._by_prefix.get(raw[:12])
        if full is not None and (full.startswith(raw) or raw.startswith(full)):
            return full
        if process.container_id and process.cgroup and container_id_from_cgroup(process.cgroup) is None \
                and _outside_containers(process.cgroup):
            # An older probe read a pod's id from its conmon's cgroup and
            # sent it as the container's: its report keeps working, without
            # the made-up container (a pod is no container the engine lists).
            return None
        return raw  # a container the engine did not report (containerd, CRI-O)
