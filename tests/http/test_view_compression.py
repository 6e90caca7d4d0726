"""A cached view small enough is compressed in the request, not in a worker
thread: under report load nearly every read finds a new version, and a
thread's round trip cost the request two passes of a busy event loop."""

from __future__ import annotations

import time
from typing import Any

import brotli
import orjson
import pytest

from tests.synthetic import host_report
from trioscope.http import _query, create_app
from trioscope.runtime import open_actor_system
from trioscope.system import supervision_tree

HOSTS_VIEW = "/api/v1/query/topology?view=hosts"


@pytest.fixture
async def client_with_hosts(settings):
    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)
        async with app.test_app() as test_app:
            client = test_app.test_client()
            for index in range(1, 4):
                response = await client.post("/api/v1/reports", json=host_report(index, timestamp=time.time()))
                assert response.status_code == 202
            yield client


async def hosts_view(client: Any) -> tuple[bytes, bytes]:
    """The view as it is, and brotli-compressed (decompressed again)."""
    plain = await client.get(HOSTS_VIEW, headers={"Accept-Encoding": "identity"})
    packed = await client.get(HOSTS_VIEW, headers={"Accept-Encoding": "br"})
    assert plain.status_code == packed.status_code == 200 and packed.headers["Content-Encoding"] == "br"
    return await plain.get_data(), brotli.decompress(await packed.get_data())


async def test_a_view_up_to_the_inline_size_is_compressed_without_a_worker_thread(client_with_hosts, monkeypatch):
    async def no_thread(*args: Any) -> Any:
        raise AssertionError("compressed in a worker thread")

    monkeypatch.setattr(_query, "_once_per_version", no_thread)
    plain, unpacked = await hosts_view(client_with_hosts)
    assert len(orjson.loads(plain)["topology"]["nodes"]) == 3 and unpacked == plain


async def test_a_larger_view_is_compressed_in_a_worker_thread(client_with_hosts, monkeypatch):
    threaded: list[object] = []
    real = _query._once_per_version

    async def counted(*args: Any) -> Any:
        threaded.append(args[1])
        return await real(*args)

    monkeypatch.setattr(_query, "_once_per_version", counted)
    monkeypatch.setattr(_query, "INLINE_BYTES", 100)  # the three hosts' view is larger than that
    plain, unpacked = await hosts_view(client_with_hosts)
    assert threaded == [("body", _query._VIEWS["hosts"], "br")] and unpacked == plain
