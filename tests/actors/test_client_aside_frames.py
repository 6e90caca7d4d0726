"""The ``auth`` renewals a WebSocket handler answers by itself are none of the
client actor's frames: the actor's positions (``queued_total``,
``reset_position``) do not count them, so neither may what the link says has
been sent (``delivered``). Counted, N answers (a bad token is answered too)
put ``delivered`` N frames ahead: a reset still in the outbox counted as sent,
its bytes were released from its address's and the server's reset budgets
(``hold_until_sent``) and the next reset was allowed (``drained``) while it
was still queued (a reviewer, driving ``ClientLink`` directly)."""

from __future__ import annotations

import orjson
import trio
import trio.testing

from trioscope.actors.client_link import ClientLink
from trioscope.domain.principals import Principal, Role
from trioscope.http._client_sockets import _Holder, _renew

BAD_AUTH = orjson.dumps({"type": "auth", "token": 5})
"""A renewal answered ``invalid_token`` without any secret being read."""


def _holder() -> _Holder:
    return _Holder(Principal(user_id="alice", tenant="acme", role=Role.VIEWER, expires_at=1e12))


async def test_a_renewals_answer_does_not_count_as_a_sent_frame_of_the_actors() -> None:
    link = ClientLink(16)
    released: list[str] = []
    link.outbox.send_nowait("diff-1")  # the actor's frame 1
    assert _renew(link, _holder(), BAD_AUTH)  # the handler's answer, between the actor's frames
    link.outbox.send_nowait("RESET")  # the actor's frame 2: reset_position = 2
    link.hold_until_sent(2, lambda: released.append("reset"))
    frames = link.frames.__aiter__()
    assert await frames.__anext__() == "diff-1"
    answer = orjson.loads(str(await frames.__anext__()))
    assert answer["type"] == "error" and answer["payload"]["code"] == "invalid_token", answer
    link._writer_ready()  # the writer is back for more: the reset has not even been taken
    assert link.delivered == 1 and link.queued == 1
    assert released == [] and not link.drained(2)
    assert await frames.__anext__() == "RESET"
    link._writer_ready()  # the reset has been written
    assert link.delivered == 2 and released == ["reset"] and link.drained(2)


async def test_many_answers_leave_the_actors_count_where_it_is() -> None:
    link = ClientLink(16)
    frames = link.frames.__aiter__()
    for _ in range(5):
        assert _renew(link, _holder(), BAD_AUTH)
        await frames.__anext__()
    link.outbox.send_nowait("RESET")  # the actor's first frame
    link._writer_ready()
    assert link.delivered == 0 and not link.drained(1)
    await frames.__anext__()
    link._writer_ready()
    assert link.delivered == 1 and link.drained(1)


async def test_an_answer_queued_while_the_writer_waits_is_not_counted() -> None:
    """The writer parked on an empty outbox, the answer and then the actor's
    frame come: the frame it takes second is the first of the actor's."""
    link = ClientLink(16)
    taken: list[object] = []

    async def writer() -> None:
        async for frame in link.frames:
            taken.append(frame)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        assert _renew(link, _holder(), BAD_AUTH)
        link.outbox.send_nowait("RESET")
        await trio.testing.wait_all_tasks_blocked()
        assert len(taken) == 2 and taken[1] == "RESET"
        assert link.delivered == 1  # the reset, written; not the answer as well
        link.outbox.send_nowait("diff-2")
        assert _renew(link, _holder(), BAD_AUTH)
        link.outbox.send_nowait("diff-3")
        await trio.testing.wait_all_tasks_blocked()
        assert link.delivered == 3 and len(taken) == 5
        nursery.cancel_scope.cancel()
