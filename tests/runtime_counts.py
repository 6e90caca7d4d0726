"""What an actor has done, read from a server's ``/api/v1/runtime`` snapshot."""

from __future__ import annotations

from typing import Any


def processed(node: Any, path: str) -> int:
    """Messages the actor at ``path`` has handled, from the runtime snapshot."""
    if isinstance(node, dict):
        if node.get("path") == path and "processed" in node:
            return int(node["processed"])
        return max((processed(v, path) for v in node.values()), default=0)
    if isinstance(node, list):
        return max((processed(v, path) for v in node), default=0)
    return 0
