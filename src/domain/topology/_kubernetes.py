"""Kubernetes pods and services (and Compose services) from container labels.

Kubelet labels every container it starts with ``io.kubernetes.pod.name``,
``io.kubernetes.pod.namespace`` and ``io.kubernetes.pod.uid``. Services are not
on containers; we take the conventional application label instead
(``app.kubernetes.io/name``, then ``app``), and for Docker Compose the project and
service labels, so that a Compose stack shows up as services too.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._model import pod_id, service_id

POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
APP_NAME = ("app.kubernetes.io/name", "app")
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"


def pod_of(labels: Mapping[str, str]) -> str | None:
    name = labels.get(POD_NAME)
    if not name:
        return None
    return pod_id(labels.get(POD_NAMESPACE) or "default", name)


def service_of(labels: Mapping[str, str]) -> str | None:
    if labels.get(POD_NAME):
        namespace = labels.get(POD_NAMESPACE) or "default"
        for key in APP_NAME:
            if labels.get(key):
                return service_id(namespace, labels[key])
        return None
    if labels.get(COMPOSE_SERVICE):
        return service_id(labels.get(COMPOSE_PROJECT) or "default", labels[COMPOSE_SERVICE])
    return None
