"""Shared test actors: a scriptable worker that records what happens to it."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import attrs
import trio
import trio.testing

from trioscope.runtime import Actor, ActorSpec, Restart


@attrs.frozen
class Crash:
    """Raise while handling this message."""

    why: str = "boom"


@attrs.frozen
class Block:
    """Wait for the event before finishing this message."""

    until: trio.Event


@attrs.frozen
class Hang:
    """Never finish this message (ignore graceful stops)."""


@attrs.frozen
class StopSelf:
    """Exit normally after this message."""


class Journal:
    """What happened, in order: ``(event, actor name, instance number, detail)``."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, int, Any]] = []
        self._instances = itertools.count(1)

    def new_instance(self) -> int:
        return next(self._instances)

    def add(self, event: str, name: str, instance: int, detail: Any = None) -> None:
        self.entries.append((event, name, instance, detail))

    def of(self, event: str, name: str | None = None) -> list[tuple[str, str, int, Any]]:
        return [e for e in self.entries if e[0] == event and (name is None or e[1] == name)]

    def starts(self, name: str) -> int:
        return len(self.of("start", name))

    def handled(self, name: str) -> list[Any]:
        return [e[3] for e in self.of("handle", name)]


class Worker(Actor):
    """Records start/handle/idle/stop in the journal; obeys the messages above."""

    def __init__(self, name: str, journal: Journal, fail_start: Callable[[], bool] = lambda: False) -> None:
        self.name = name
        self.journal = journal
        self.instance = journal.new_instance()
        self.fail_start = fail_start

    async def on_start(self) -> None:
        if self.fail_start():
            raise RuntimeError(f"{self.name} cannot start")
        self.journal.add("start", self.name, self.instance)

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Crash):
            raise ValueError(message.why)
        if isinstance(message, Block):
            await message.until.wait()
        elif isinstance(message, Hang):
            await trio.sleep_forever()
        elif isinstance(message, StopSelf):
            self.context.stop()
        self.journal.add("handle", self.name, self.instance, message)
        return (self.name, self.instance, message)

    async def on_idle(self) -> None:
        self.journal.add("idle", self.name, self.instance)

    async def on_stop(self) -> None:
        self.journal.add("stop", self.name, self.instance)


def worker(name: str, journal: Journal, restart: Restart = Restart.PERMANENT, **kwargs: Any) -> ActorSpec:
    fail_start = kwargs.pop("fail_start", lambda: False)
    return ActorSpec(name=name, factory=lambda: Worker(name, journal, fail_start), restart=restart, **kwargs)


async def settle() -> None:
    """Wait until every task is blocked: the system has reacted to everything."""
    await trio.testing.wait_all_tasks_blocked()
