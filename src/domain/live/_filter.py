"""What a client's filter lets through: ``Filter``, and the searched text of a
version's nodes made once for every client that filters them (``SearchTexts``)."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from trioscope.domain.topology import Node, TopologySnapshot


@attrs.frozen
class Filter:
    """Which nodes (and so edges) a client wants; an empty filter passes all."""

    search: str = ""
    """Case-insensitive substring of the label, id or a metadata value."""
    labels: Mapping[str, str] = attrs.field(factory=dict)
    """Container labels that must match exactly."""
    min_metrics: Mapping[str, float] = attrs.field(factory=dict)
    """Metrics that must be at least this value."""
    ids: frozenset[str] = frozenset()
    """Only these nodes (from ``node:<id>`` topics); empty for all."""

    @property
    def empty(self) -> bool:
        return not (self.search or self.labels or self.min_metrics or self.ids)

    def matches(self, node: Node, texts: SearchTexts | None = None) -> bool:
        """Whether ``node`` passes; ``texts``: where the searched text of the
        nodes of its version is kept, made once for every client of it."""
        if self.ids and node.id not in self.ids:
            return False
        if self.search:
            needle = self.search.lower()
            if texts is not None and _SEPARATOR not in needle:
                if needle not in texts.of(node):
                    return False
            elif not any(needle in text.lower() for text in _haystack(node)):
                return False
        if self.labels:
            labels = node.metadata.get("labels", {})
            if any(labels.get(k) != v for k, v in self.labels.items()):
                return False
        for name, minimum in self.min_metrics.items():
            if node.metrics.get(name, float("-inf")) < minimum:
                return False
        return True


_SEPARATOR = "\x00"
"""Between the texts of one node in its ``SearchTexts`` entry: a search with
it is looked for text by text instead."""


def _haystack(node: Node) -> list[str]:
    """The texts a filter's ``search`` looks in."""
    return [node.label, node.id, *(str(v) for v in node.metadata.values())]


class SearchTexts:
    """The lower-cased searched text of the nodes of one version, each made
    once for every client that filters them (``Filter.matches``): a hundred
    clients with a search each lower-cased every changed node's metadata a
    hundred times a version. Kept with the version (``of_version``), and
    holding only the nodes looked at: those of the diffs."""

    __slots__ = ("_texts",)

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}

    @staticmethod
    def of_version(snapshot: TopologySnapshot) -> SearchTexts:
        """The one of ``snapshot``'s version (its nodes are the ones looked up)."""
        return snapshot.derived(("live search texts",), SearchTexts)

    def of(self, node: Node) -> str:
        """``node``'s texts, lower-cased, joined by ``_SEPARATOR``."""
        text = self._texts.get(node.id)
        if text is None:
            text = self._texts[node.id] = _SEPARATOR.join(t.lower() for t in _haystack(node))
        return text
