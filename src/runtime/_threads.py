"""Work in a worker thread whose expected exceptions come back without what they held.

An exception raised in a worker thread and raised again across
``trio.to_thread.run_sync`` is held in reference cycles: the frames that carry
it back to the event loop hold it, and its traceback holds them, with every
frame it came through and their locals (a request's body and what was decoded
of it, a write's samples) until the cyclic collector's next full pass, which a
server tuned for few collections seldom makes. An expected refusal is answered,
never logged: its traceback and context are dropped in the thread and it
crosses as a value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import trio

T = TypeVar("T")


@attrs.define
class _Refused:
    error: BaseException | None
    """Taken out when raised: trio's outcome of the thread may outlive the raise, and must not hold it."""


async def in_thread(work: Callable[..., T], *args: Any, refusals: tuple[type[BaseException], ...],
                    limiter: trio.CapacityLimiter | None = None, abandon_on_cancel: bool = False) -> T:
    """``work(*args)`` in a worker thread (of ``limiter``; ``abandon_on_cancel``
    as ``trio.to_thread.run_sync``'s). An exception of ``refusals`` is raised
    here with no traceback, context or cause of the thread's; any other crosses
    as ``trio.to_thread.run_sync`` carries it (a bug: its traceback is wanted)."""
    answer = await trio.to_thread.run_sync(_refused_returned, work, args, refusals, limiter=limiter,
                                           abandon_on_cancel=abandon_on_cancel)
    if not isinstance(answer, _Refused):
        return answer
    refusal, answer.error = answer.error, None
    del answer
    assert refusal is not None
    try:
        raise refusal
    finally:
        del refusal  # this frame is in its traceback: holding it here would be a cycle again


def _refused_returned(work: Callable[..., T], args: tuple[Any, ...],
                      refusals: tuple[type[BaseException], ...]) -> T | _Refused:
    try:
        return work(*args)
    except refusals as exc:
        exc.__traceback__ = exc.__context__ = exc.__cause__ = None
        return _Refused(exc)
