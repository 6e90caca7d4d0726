"""Scrapes of /metrics asked while one is being made share its answer: each
made its own (~8 ms), and eight clients scraping in a loop took most of a
2-core server's time."""

from __future__ import annotations

import trio
import trio.testing

from trioscope.http._metrics import SharedScrapes


async def test_scrapes_asked_meanwhile_answer_what_the_first_makes_and_later_ones_make_their_own() -> None:
    scrapes = SharedScrapes()
    release = trio.Event()
    made: list[str | None] = []

    async def make(reader: str | None) -> bytes:
        made.append(reader)
        await release.wait()
        return f"body {made.count(reader)} for {reader}".encode()

    answers: list[bytes] = []

    async def scrape(reader: str | None) -> None:
        answers.append(await scrapes.body(reader, lambda: make(reader)))

    async with trio.open_nursery() as nursery:
        for reader in (None, None, None, "acme"):
            nursery.start_soon(scrape, reader)
        await trio.testing.wait_all_tasks_blocked()
        assert len(made) == 2 and set(made) == {None, "acme"}  # one per reader: a tenant's view is not everyone's
        release.set()
    assert sorted(answers) == [b"body 1 for None"] * 3 + [b"body 1 for acme"]
    assert await scrapes.body(None, lambda: make(None)) == b"body 2 for None"  # nothing kept after


async def test_a_scrape_that_fails_leaves_the_waiting_ones_to_make_their_own() -> None:
    scrapes = SharedScrapes()
    release = trio.Event()
    calls = 0

    async def make() -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()
            raise RuntimeError("the topology did not answer")
        return b"made again"

    answers: list[bytes] = []
    failed: list[Exception] = []

    async def first() -> None:
        try:
            await scrapes.body(None, make)
        except RuntimeError as exc:
            failed.append(exc)

    async def second() -> None:
        answers.append(await scrapes.body(None, make))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(second)
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert len(failed) == 1 and answers == [b"made again"] and calls == 2
