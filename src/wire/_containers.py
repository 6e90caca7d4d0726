"""Which container a process belongs to, from the text of ``/proc/<pid>/cgroup``.

Each runtime names its cgroups differently; what they share is a 64-hex-digit
container id somewhere in the path:

* Docker: ``/docker/<id>`` or (systemd driver) ``/system.slice/docker-<id>.scope``
* Podman / libpod: ``/libpod_parent/libpod-<id>`` or ``/machine.slice/libpod-<id>.scope``
  (``libpod-conmon-<id>`` is the monitor process, not the container)
* containerd: ``/system.slice/containerd.service/.../<id>`` or ``cri-containerd-<id>.scope``
* CRI-O: ``crio-<id>.scope``
* Kubernetes (any runtime): ``/kubepods/.../pod<uid>/<id>`` or
  ``/kubepods.slice/.../kubepods-...-pod<uid>.slice/<runtime>-<id>.scope``

Here and not in the probe because the server reads the same field: a status
agent sends a process's ``cgroup`` without its ``container_id``, and the
topology (and the memory budget) infer the container from it. One reading of
the report's ``cgroup`` field, for whoever fills it in or reads it.
"""

from __future__ import annotations

import re

from ._models import ProcessInfo

_ID = re.compile(
    r"(?:^|[/-])(?:docker-|libpod-|cri-containerd-|crio-|containerd-)?([0-9a-f]{64})(?:\.scope)?(?:/|$)"
)
_CONMON = re.compile(r"libpod-conmon-[0-9a-f]{64}")


def container_id_from_cgroup(text: str) -> str | None:
    """The container id in a ``/proc/<pid>/cgroup`` text (v1 or v2), or None for
    processes outside containers (and for Podman's conmon monitors)."""
    for line in text.splitlines():
        path = line.rpartition(":")[2]
        if _CONMON.search(path):
            continue
        ids = _ID.findall(path)
        if ids:
            return str(ids[-1])  # the innermost id wins (nested containers)
    return None


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
        return raw  # a container the engine did not report (containerd, CRI-O)
