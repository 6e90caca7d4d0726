"""Which nodes one client may see at all, and which of them it holds (``Visibility``)."""

from __future__ import annotations

from collections.abc import Callable

from trioscope.domain.topology import Node, visible_to


class Visibility:
    """Which nodes one client may see at all (with ``auth.protect_reads``: those
    its tenant's probes reported), and which of them it holds: removals and
    edges name node ids, so only those of nodes it was shown are sent.

    ``may_see`` answers for a probe agent id and may change its answers (a
    probe enrolling); a node that stops being visible leaves the client's view.
    ``scope``: the ``node_scope`` of the reader's tenant, whose scoped nodes
    alone it sees (``visible_to``).
    Without ``may_see`` every node may be seen and it only keeps track of what
    the client holds, which a client with a filter needs as much: a node that
    starts matching is new to it (``add``, with its edges to the nodes it
    holds), and an edge is its only if it holds both ends.
    """

    def __init__(self, may_see: Callable[[str], bool] | None = None, scope: str = "") -> None:
        self.may_see = may_see if may_see is not None else _anyone
        self._everyone = may_see is None
        self._visible = visible_to(scope, self.may_see)
        self.shown: set[str] = set()

    def node(self, node: Node) -> bool:
        return self._everyone or self._visible(node.id, node.agent_id)


def _anyone(agent_id: str) -> bool:
    return True
