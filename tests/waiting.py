"""Waiting on a condition with a deadline (never a bare sleep)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

POLL = 0.05


async def eventually(check: Callable[[], Awaitable[Any]], deadline: float = 30.0) -> Any:
    """``await check()`` until it returns something truthy, and return that;
    ``trio.TooSlowError`` after ``deadline`` seconds."""
    with trio.fail_after(deadline):
        while True:
            value = await check()
            if value:
                return value
            await trio.sleep(POLL)
