"""Kubernetes' service links: for each Service of a pod's namespace, variables
named after it (``enableServiceLinks``, on by default). A Service named
``trioscope`` gives every pod ``TRIOSCOPE_SERVICE_HOST``, ``TRIOSCOPE_PORT``,
``TRIOSCOPE_PORT_8080_TCP_ADDR``...: names in the settings' own prefix that no
setting has, which the server and the probe refused (exit 2), so every pod
started after the Service crashed in a loop.

A name is one only beside its Service's ``<NAME>_SERVICE_HOST``, which
Kubernetes always sets with the others: a mistyped setting
(``TRIOSCOPE_SERVR_PORT``) has none and is still told as unknown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_SERVICE_HOST = "_SERVICE_HOST"
_OF_SERVICE = r"_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT(?:_[0-9]+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)"


def service_links(environ: Mapping[str, str], prefix: str) -> frozenset[str]:
    """The names in ``environ`` starting with ``prefix`` that Kubernetes set for a Service."""
    services = [name[:-len(_SERVICE_HOST)] for name in environ
                if name.startswith(prefix) and name.endswith(_SERVICE_HOST)]
    if not services:
        return frozenset()
    link = re.compile(f"(?:{'|'.join(map(re.escape, services))}){_OF_SERVICE}")
    return frozenset(name for name in environ if name.startswith(prefix) and link.fullmatch(name))
