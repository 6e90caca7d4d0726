"""Actor runtime overhead against raw trio memory channels, measured in one run.

    .venv/bin/python bench/actors.py [--messages N] [--rounds R]

* tell: a producer ``tell``s N messages to a no-op actor through a mailbox of
  1000 (yielding when it is full) until the actor has handled them all; baseline:
  ``send_nowait`` into a memory channel of 1000 and a consumer task (``tell``),
  and the same with a consumer that drains up to 64 messages per wake-up as the
  actor loop does (``tell*``, the stricter baseline).
* send: the same with ``await ref.send`` vs ``await channel.send`` (back-pressure).
* ask: N sequential ``ask`` round trips; baseline: a request channel and a reply
  channel between two tasks.

Targets (issue 3): tell >= 0.5x the raw channel's throughput, ask <= 3x the raw
round trip. Rounds alternate baseline and candidate; the median ratio is reported
because these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import trio

from trioscope.runtime import Actor, ActorSpec, MailboxFull, SupervisorSpec, open_actor_system

CAPACITY = 1000


class Sink(Actor):
    def __init__(self) -> None:
        self.count = 0

    async def handle(self, message: object) -> int:
        self.count += 1
        return self.count


async def timed(fn: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


# ---- tell / send ----------------------------------------------------------------

async def send_all_nowait(send: trio.MemorySendChannel[int], n: int) -> None:
    """``send_nowait`` n messages, yielding whenever the channel is full (what a
    producer using ``tell`` does on MailboxFull)."""
    for i in range(n):
        while True:
            try:
                send.send_nowait(i)
                break
            except trio.WouldBlock:
                await trio.lowlevel.checkpoint()


async def raw_tell(n: int) -> float:
    send, receive = trio.open_memory_channel[int](CAPACITY)
    done = trio.Event()

    async def consumer() -> None:
        count = 0
        async for _ in receive:
            count += 1
            if count == n:
                done.set()
                return

    async def producer() -> None:
        await send_all_nowait(send, n)
        await done.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        elapsed = await timed(producer)
    return elapsed


async def raw_tell_batched(n: int) -> float:
    """The stricter baseline: a consumer that drains the channel without yielding
    between messages, as the actor loop does (up to 64 at a time)."""
    send, receive = trio.open_memory_channel[int](CAPACITY)
    done = trio.Event()

    async def consumer() -> None:
        count = 0
        while count < n:
            await receive.receive()
            count += 1
            for _ in range(63):
                try:
                    receive.receive_nowait()
                except trio.WouldBlock:
                    break
                count += 1
        done.set()

    async def producer() -> None:
        await send_all_nowait(send, n)
        await done.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        elapsed = await timed(producer)
    return elapsed


async def actor_tell(n: int) -> float:
    spec = SupervisorSpec(name="root", children=[ActorSpec(name="sink", factory=Sink, mailbox_size=CAPACITY)])
    async with open_actor_system(spec) as system:
        ref = system.lookup("/root/sink")

        async def producer() -> None:
            for i in range(n):
                while True:
                    try:
                        ref.tell(i)
                        break
                    except MailboxFull:
                        await trio.lowlevel.checkpoint()
            assert await ref.ask("sync") == n + 1

        return await timed(producer)


async def raw_send(n: int) -> float:
    send, receive = trio.open_memory_channel[int](CAPACITY)
    done = trio.Event()

    async def consumer() -> None:
        count = 0
        async for _ in receive:
            count += 1
            if count == n:
                done.set()
                return

    async def producer() -> None:
        for i in range(n):
            await send.send(i)
        await done.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        elapsed = await timed(producer)
    return elapsed


async def actor_send(n: int) -> float:
    spec = SupervisorSpec(name="root", children=[ActorSpec(name="sink", factory=Sink, mailbox_size=CAPACITY)])
    async with open_actor_system(spec) as system:
        ref = system.lookup("/root/sink")

        async def producer() -> None:
            for i in range(n):
                await ref.send(i)
            assert await ref.ask("sync") == n + 1

        return await timed(producer)


# ---- ask ----------------------------------------------------------------------

async def raw_ask(n: int) -> float:
    requests_send, requests = trio.open_memory_channel[int](CAPACITY)
    replies_send, replies = trio.open_memory_channel[int](1)

    async def server() -> None:
        async for request in requests:
            await replies_send.send(request)

    async def client() -> None:
        for i in range(n):
            await requests_send.send(i)
            await replies.receive()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        elapsed = await timed(client)
        nursery.cancel_scope.cancel()
    return elapsed


async def actor_ask(n: int) -> float:
    spec = SupervisorSpec(name="root", children=[ActorSpec(name="sink", factory=Sink, mailbox_size=CAPACITY)])
    async with open_actor_system(spec) as system:
        ref = system.lookup("/root/sink")

        async def client() -> None:
            for i in range(n):
                await ref.ask(i)

        return await timed(client)


async def compare(name: str, baseline: Callable[[int], Awaitable[float]],
                  candidate: Callable[[int], Awaitable[float]], n: int, rounds: int,
                  higher_is_better: bool) -> float:
    base_times, cand_times, ratios = [], [], []
    for _ in range(rounds):
        b = await baseline(n)
        c = await candidate(n)
        base_times.append(b)
        cand_times.append(c)
        # Throughput ratio (candidate/baseline) for tell/send; latency ratio for ask.
        ratios.append(b / c if higher_is_better else c / b)
    b, c, r = statistics.median(base_times), statistics.median(cand_times), statistics.median(ratios)
    if higher_is_better:
        print(f"{name:<6} raw channel {n / b:>10,.0f} msg/s   actor {n / c:>10,.0f} msg/s   "
              f"ratio {r:.2f}x of raw (median of {rounds})")
    else:
        print(f"{name:<6} raw channel {b / n * 1e6:>8.2f} us/rt   actor {c / n * 1e6:>8.2f} us/rt   "
              f"ratio {r:.2f}x of raw (median of {rounds})")
    return r


async def main(n: int, rounds: int) -> int:
    tell = await compare("tell", raw_tell, actor_tell, n, rounds, higher_is_better=True)
    batched = await compare("tell*", raw_tell_batched, actor_tell, n, rounds, higher_is_better=True)
    await compare("send", raw_send, actor_send, n, rounds, higher_is_better=True)
    ask = await compare("ask", raw_ask, actor_ask, n // 4, rounds, higher_is_better=False)
    ok = tell >= 0.5 and batched >= 0.5 and ask <= 3.0
    print("tell* is against a batch-draining raw consumer, the stricter baseline")
    print(f"targets: tell >= 0.5x raw ({'met' if min(tell, batched) >= 0.5 else 'MISSED'}), "
          f"ask <= 3x raw ({'met' if ask <= 3.0 else 'MISSED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    raise SystemExit(trio.run(main, args.messages, args.rounds))
