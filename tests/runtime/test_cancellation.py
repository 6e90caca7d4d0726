"""A tree cancelled from outside (a second SIGINT to the server) is cancelled, not crashed."""

from __future__ import annotations

import trio

from tests.runtime.scripted import Journal, settle, worker
from trioscope.runtime import Actor, ActorSpec, SupervisorSpec, open_actor_system


class Busy(Actor):
    """Runs tasks of its own, so its nursery raises a group when cancelled."""

    async def on_start(self) -> None:
        self.context.start_soon(trio.sleep_forever)
        self.context.start_soon(trio.sleep_forever)

    async def handle(self, message):
        return message


async def test_cancelling_the_whole_tree_is_no_crash(journal: Journal, caplog):
    # Every nursery on the way out raises a group holding only Cancelled.
    spec = SupervisorSpec(name="root", children=[
        worker("w", journal), ActorSpec(name="busy", factory=Busy),
        SupervisorSpec(name="sub", children=[ActorSpec(name="busy", factory=Busy)]),
    ])
    with trio.CancelScope() as everything:
        async with open_actor_system(spec) as system:
            await settle()
            assert system.lookup("/root/sub/busy").alive
            everything.cancel(reason="a second signal")
            await trio.sleep_forever()
    assert everything.cancelled_caught
    assert [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "crashed" or r.exc_info] == []


async def test_a_crash_beside_cancellations_is_still_a_crash(journal: Journal, caplog):
    starts = []

    class Failing(Actor):
        async def on_start(self) -> None:
            starts.append(True)
            self.context.start_soon(trio.sleep_forever)
            if len(starts) == 1:
                self.context.start_soon(self._fail)

        async def _fail(self) -> None:
            raise OSError("socket went away")

        async def handle(self, message):
            return message

    async with open_actor_system(SupervisorSpec(name="root", children=[ActorSpec(name="f", factory=Failing)])):
        await settle()
    crashes = [r for r in caplog.records if getattr(r, "event", None) == "crashed"]
    assert [(r.actor, r.error) for r in crashes] == [("/root/f", "OSError")]
