"""The deadlines of open commands a replica hears of but holds no queue for.

With replicas, a deployment's queue runs only on the replicas its requests
reached (see ``trioscope.actors.queue_owner``). Another replica still has to
fire a deadline should the replicas holding the queue be gone: it keeps, per
command, only its version and next deadline, and starts the deployment's queue
(which reads the open commands and fires what is overdue, compare-and-set, so
once across replicas) when one of them passed unresolved. Pure: the caller
passes ``now``.
"""

from __future__ import annotations

import heapq

from ._model import Command


class DeadlineWatch:
    """Next deadline of each watched open command, by deployment."""

    def __init__(self, *, delivery_deadline: float, timeout_grace: float) -> None:
        self.delivery_deadline = delivery_deadline
        self.timeout_grace = timeout_grace
        self._watched: dict[str, dict[str, tuple[int, float]]] = {}
        """Deployment hash -> command id -> (history length, deadline) of its newest known version."""
        self._heap: list[tuple[float, str, str]] = []
        """(deadline, deployment hash, command id), pushed on every change of a deadline;
        an entry that no longer is its command's deadline is dropped when it comes up."""

    def __len__(self) -> int:
        return sum(map(len, self._watched.values()))

    def note(self, command: Command) -> None:
        """``command`` as committed: watch its new deadline, or stop watching it
        once it is finished. An older version than the one watched changes
        nothing. (A version older than a finished one, arriving after it, is
        watched again: at worst its deadline starts a queue that finds nothing
        to do.)"""
        watched = self._watched.get(command.deployment_hash)
        held = watched.get(command.id) if watched is not None else None
        version = len(command.history)
        if held is not None and held[0] >= version:
            return
        deadline = command.deadline(delivery_deadline=self.delivery_deadline, timeout_grace=self.timeout_grace)
        if deadline is None:
            if watched is not None and held is not None:
                del watched[command.id]
                if not watched:
                    del self._watched[command.deployment_hash]
            return
        self._watched.setdefault(command.deployment_hash, {})[command.id] = (version, deadline)
        if held is None or held[1] != deadline:
            heapq.heappush(self._heap, (deadline, command.deployment_hash, command.id))
            if len(self._heap) > 2 * len(self) + 64:
                self._heap = [(d, h, i) for h, commands in self._watched.items() for i, (_, d) in commands.items()]
                heapq.heapify(self._heap)

    def forget(self, deployment_hash: str) -> None:
        """A queue for the deployment runs here now: it holds the deadlines."""
        self._watched.pop(deployment_hash, None)

    def next_deadline(self) -> float | None:
        """The earliest watched deadline (None: nothing watched)."""
        while self._heap:
            if self._current(self._heap[0]):
                return self._heap[0][0]
            heapq.heappop(self._heap)
        return None

    def due(self, now: float) -> list[str]:
        """The deployments with a watched deadline at or before ``now``, no longer
        watched (their queue is to be started, and holds them from then on)."""
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            if self._current(entry):
                due.append(entry[1])
                del self._watched[entry[1]]
        return due

    def _current(self, entry: tuple[float, str, str]) -> bool:
        held = self._watched.get(entry[1], {}).get(entry[2])
        return held is not None and held[1] == entry[0]
