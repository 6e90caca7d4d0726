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
"""

from __future__ import annotations

import re

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
