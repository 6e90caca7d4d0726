"""Test streams a killed run left on the machine's NATS are deleted by the next
run (``tests.bus_server.forget_left_streams``): JetStream keeps room for each
stream's whole ``max_bytes``, and seven of them left no room for any other."""

from __future__ import annotations

import nats

from tests.bus_server import OwnNatsServer, _run_asyncio, forget_left_streams, stream_name


def streams(url: str, *create: str) -> list[str]:
    async def work() -> list[str]:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            js = nc.jetstream()
            for name in create:
                await js.add_stream(name=name, subjects=[f"{name}.>"], max_bytes=1024 * 1024)
            return sorted(info.config.name or "" for info in await js.streams_info())
        finally:
            await nc.close()

    return _run_asyncio(work)


def test_only_test_streams_older_than_the_limit_are_deleted(own_nats: OwnNatsServer) -> None:
    left, other = stream_name(), "reports"
    assert streams(own_nats.url, left, other) == sorted([left, other])
    assert forget_left_streams(own_nats.url) == []  # made just now: a running test's, perhaps
    assert streams(own_nats.url) == sorted([left, other])
    assert forget_left_streams(own_nats.url, older_than=0.0) == [left]
    assert streams(own_nats.url) == [other]  # never a stream that is not a test's
