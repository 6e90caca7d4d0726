"""Kubernetes pods and services (and Compose services) from container labels.

Kubelet labels every container it starts with ``io.kubernetes.pod.name``,
``io.kubernetes.pod.namespace`` and ``io.kubernetes.pod.uid``. Services are not
on containers; we take the conventional application label instead
(``app.kubernetes.io/name``, then ``app``), and for Docker Compose the project and
service labels, so that a Compose stack shows up as services too.

Here and not in the topology because the memory budget counts the pods and
services a report makes (``MemoryBudget``), and the probe fits its reports to
that count: both sides read the labels by these rules. The topology names the
nodes (``pod_id``, ``service_id``).
"""

from __future__ import annotations

from collections.abc import Mapping

POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
APP_NAME = ("app.kubernetes.io/name", "app")
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"


def pod_of(labels: Mapping[str, str]) -> tuple[str, str] | None:
    """The (namespace, name) of the pod a container with ``labels`` runs in, if any."""
    name = labels.get(POD_NAME)
    if not name:
        return None
    return labels.get(POD_NAMESPACE) or "default", name


def service_of(labels: Mapping[str, str]) -> tuple[str, str] | None:
    """The (namespace or Compose project, name) of the service a container with
    ``labels`` belongs to, if any."""
    if labels.get(POD_NAME):
        namespace = labels.get(POD_NAMESPACE) or "default"
        for key in APP_NAME:
            if labels.get(key):
                return namespace, labels[key]
        return None
    if labels.get(COMPOSE_SERVICE):
        return labels.get(COMPOSE_PROJECT) or "default", labels[COMPOSE_SERVICE]
    return None
