"""``in_thread``: a refusal raised in the worker thread comes back holding nothing of it."""

from __future__ import annotations

import gc
import traceback
import weakref

import pytest
import trio

from trioscope.runtime import in_thread


class Refused(Exception):
    pass


class Held:
    """What the thread's frames hold (a request's body, a write's samples)."""


async def test_a_refusal_crosses_without_its_traceback_and_holds_nothing_of_the_thread() -> None:
    held = Held()
    seen = weakref.ref(held)

    def work(payload: Held) -> None:
        try:
            raise KeyError("inner")
        except KeyError:
            raise Refused("no") from None

    gc.disable()  # what is left must be left by references, not waiting for the collector
    try:
        with pytest.raises(Refused) as caught:
            await in_thread(work, held, refusals=(Refused,))
        assert caught.value.__context__ is None and caught.value.__cause__ is None
        assert all(frame.name != "work" for frame in traceback.extract_tb(caught.value.__traceback__))
        del held, caught
        assert seen() is None  # in no reference cycle: gone with the refusal, the collector off
    finally:
        gc.enable()


async def test_an_answer_comes_back_and_another_exception_keeps_its_traceback() -> None:
    assert await in_thread(lambda a, b: a + b, 2, 3, refusals=(Refused,)) == 5

    def broken() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError) as caught:
        await in_thread(broken, refusals=(Refused,), limiter=trio.CapacityLimiter(1))
    assert any(frame.name == "broken" for frame in traceback.extract_tb(caught.value.__traceback__))
