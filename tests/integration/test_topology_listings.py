"""Big topology listings against a real server: pages, some fields only,
compressed bodies, validators, and the server still answering during them."""

from __future__ import annotations

import base64
import time
import zlib
from collections.abc import Iterator
from typing import Any

import brotli
import httpx
import pytest
import trio

from tests.integration.test_commands import Operator, fresh
from tests.integration.test_tenancy import _report, _tenant
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually
from trioscope.domain.topology import CACHE_LIMIT, SUMMARY_FIELDS

TOPOLOGY = "/api/v1/query/topology"
HOSTS = 40
IDENTITY = {"Accept-Encoding": "identity"}


@pytest.fixture(scope="module")
def loaded() -> Iterator[str]:
    """A server holding 16,000 processes and ~16,000 edges: the full topology
    is over CACHE_LIMIT, so it is streamed as large views are."""
    # Hosts of 400 processes each: more than the default memory budget per agent.
    with ServerProcess(["--agent-memory-budget", "64MiB"]) as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as client:
        for index in range(1, HOSTS + 1):
            peers = [h for h in (index + 1, index + 2) if h <= HOSTS]
            report = host_report(index, timestamp=time.time(), processes=400, connections=800, peers=peers)
            assert client.post("/api/v1/reports", json=report).status_code == 202

        async def merged() -> bool:
            stats = client.get("/api/v1/query/stats").json()["topology"]
            return stats["nodes_by_type"]["host"] == HOSTS and stats["nodes"] + stats["edges"] > CACHE_LIMIT

        trio.run(eventually, merged)
        yield server.base_url


def whole(client: httpx.Client, **params: Any) -> dict[str, Any]:
    answer = client.get(TOPOLOGY, params=params, headers=IDENTITY)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def walk(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        page = whole(client, **params, **({"cursor": cursor} if cursor else {}))
        pages.append(page)
        cursor = page["page"]["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 1000


@pytest.mark.parametrize("view", ["processes", None])
def test_pages_list_every_node_and_edge_exactly_once(loaded: str, view: str | None) -> None:
    with httpx.Client(base_url=loaded, timeout=60) as client:
        view_params = {"view": view} if view else {}
        everything = whole(client, **view_params)["topology"]
        pages = walk(client, **view_params, limit=1500)
        assert "page" not in whole(client, view="hosts")  # no paging asked for: the seed's shape
    assert len(pages) > 4
    nodes = [node_id for page in pages for node_id in page["topology"]["nodes"]]
    edges = [edge_id for page in pages for edge_id in page["topology"]["edges"]]
    assert len(nodes) == len(set(nodes)) and set(nodes) == set(everything["nodes"])
    assert len(edges) == len(set(edges)) and set(edges) == set(everything["edges"])
    for page in pages:
        assert page["page"]["limit"] == 1500 and page["page"]["count"] == len(page["topology"]["nodes"]) <= 1500
        assert page["topology"]["version"] == everything["version"]
        assert page["topology"]["view"] == (view or "all")
        assert all(page["topology"]["nodes"][n] == everything["nodes"][n] for n in page["topology"]["nodes"])


def test_fields_and_summary_show_only_what_they_name(loaded: str) -> None:
    with httpx.Client(base_url=loaded, timeout=60) as client:
        everything = whole(client, view="processes")["topology"]
        some = whole(client, view="processes", fields="label, parent,metrics,label")["topology"]
        summary = whole(client, summary="true", limit=50)
    assert some["edges"] == everything["edges"]
    assert set(some["nodes"]) == set(everything["nodes"])
    assert all(node == {key: everything["nodes"][node_id][key] for key in ("label", "parent", "metrics")}
               for node_id, node in some["nodes"].items())
    assert len(summary["topology"]["nodes"]) == 50
    assert all(list(node) == list(SUMMARY_FIELDS) for node in summary["topology"]["nodes"].values())


def raw(client: httpx.Client, encoding: str, **params: Any) -> httpx.Response:
    """The body as sent (httpx decodes only when asked to read ``.content``)."""
    with client.stream("GET", TOPOLOGY, params=params, headers={"Accept-Encoding": encoding}) as answer:
        answer.raw_body = b"".join(answer.iter_raw())  # type: ignore[attr-defined]
    return answer


@pytest.mark.parametrize("params", [{}, {"view": "hosts"}, {"view": "processes", "limit": 2000}],
                         ids=["streamed", "cached", "paged"])
def test_compressed_bodies_are_the_same_document(loaded: str, params: dict[str, Any]) -> None:
    with httpx.Client(base_url=loaded, timeout=60) as client:
        plain = raw(client, "identity", **params)
        gzipped = raw(client, "gzip", **params)
        brotlied = raw(client, "br;q=1, gzip;q=0.5", **params)
        unasked = [raw(client, header, **params) for header in ("", "gzip;q=0, br;q=0", "deflate")]
        again = raw(client, "gzip", **params)
    assert plain.headers.get("Content-Encoding") is None and "Accept-Encoding" in plain.headers["Vary"]
    assert gzipped.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in gzipped.headers["Vary"]
    assert brotlied.headers["Content-Encoding"] == "br"
    assert zlib.decompress(gzipped.raw_body, wbits=31) == plain.raw_body  # type: ignore[attr-defined]
    assert brotli.decompress(brotlied.raw_body) == plain.raw_body  # type: ignore[attr-defined]
    assert len(brotlied.raw_body) < len(plain.raw_body) / 5  # type: ignore[attr-defined]
    assert again.raw_body == gzipped.raw_body  # type: ignore[attr-defined]
    if not params:  # a whole view compressed is kept for the version's next readers, not built again
        assert "Content-Length" not in gzipped.headers
        assert int(again.headers["Content-Length"]) == len(again.raw_body)  # type: ignore[attr-defined]
    for answer in unasked:
        assert answer.headers.get("Content-Encoding") is None
        assert answer.raw_body == plain.raw_body  # type: ignore[attr-defined]


@pytest.mark.parametrize(("params", "parameter"), [
    ({"limit": "0"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": "50001"}, "limit"),
    ({"limit": "-5"}, "limit"),
    ({"cursor": "@@not base64@@"}, "cursor"),
    ({"cursor": "x" * 2000}, "cursor"),
    ({"view": "hosts", "cursor": base64.urlsafe_b64encode(b"process:host-1:1000").decode()}, "cursor"),
    ({"fields": "label,colour"}, "fields"),
    ({"fields": " , "}, "fields"),
    ({"summary": "yes"}, "summary"),
    ({"summary": "true", "fields": "label"}, "fields"),
])
def test_bad_parameters_are_400_naming_them(loaded: str, params: dict[str, str], parameter: str) -> None:
    with httpx.Client(base_url=loaded) as client:
        answer = client.get(TOPOLOGY, params=params)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_parameter" and error["details"]["parameter"] == parameter
    assert error["message"].startswith(f"{parameter}:")


def test_a_poller_gets_304_until_the_version_changes(loaded: str) -> None:
    with httpx.Client(base_url=loaded) as client:
        first = client.get(TOPOLOGY, params={"view": "hosts"})
        again = client.get(TOPOLOGY, params={"view": "hosts"}, headers={"If-None-Match": first.headers["ETag"]})
        assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", first.headers["ETag"])
        report = host_report(HOSTS + 1, timestamp=time.time(), processes=3, connections=0)
        assert client.post("/api/v1/reports", json=report).status_code == 202

        async def changed() -> httpx.Response | None:
            answer = client.get(TOPOLOGY, params={"view": "hosts"}, headers={"If-None-Match": first.headers["ETag"]})
            return answer if answer.status_code == 200 else None

        later = trio.run(eventually, changed)
    assert later.headers["ETag"] != first.headers["ETag"]
    assert f"host:host-{HOSTS + 1}" in later.json()["topology"]["nodes"]


async def test_health_answers_during_a_loop_of_big_listings(loaded: str) -> None:
    in_flight, answered_during = 0, 0
    done, first_piece, answered = trio.Event(), trio.Event(), trio.Event()
    async with httpx.AsyncClient(base_url=loaded, timeout=60) as client, \
            httpx.AsyncClient(base_url=loaded, timeout=30) as probe:
        async def listings() -> None:
            nonlocal in_flight
            for view in ("processes", None, "processes", None):
                in_flight += 1
                async with client.stream("GET", TOPOLOGY, params={"view": view} if view else {},
                                         headers=IDENTITY) as answer:
                    async for _ in answer.aiter_raw():
                        if not first_piece.is_set():
                            # Mid-stream, one /health is answered before the rest is read: the loop
                            # used to be waited for with a poll, which a fast machine's four
                            # listings could finish between two looks.
                            first_piece.set()
                            await answered.wait()
                        await trio.sleep(0)  # the probe's task runs between pieces
                in_flight -= 1
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(listings)
            with trio.fail_after(30):
                await first_piece.wait()
            while not done.is_set():
                during = in_flight > 0
                answer = await probe.get("/health")  # bounded by the client's timeout
                assert answer.status_code == 200
                if during and in_flight > 0:
                    answered_during += 1
                    answered.set()
    assert answered_during > 0


async def test_a_tenant_pages_through_its_own_nodes_only() -> None:
    with ServerProcess(["--protect-reads", "true", "--agent-memory-budget", "64MiB"]) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            alice, agent = await _tenant(server, client)
            assert (await agent.signed_post(client, "/api/v1/reports", _report(1, "pa"))).status_code == 202
            assert (await client.post("/api/v1/reports", json=_report(2, "loose"))).status_code == 202

            async def page(cursor: str | None = None) -> dict[str, Any]:
                params = {"limit": 1, "fields": "agent_id", **({"cursor": cursor} if cursor else {})}
                answer = await client.get(TOPOLOGY, params=params, headers=alice.auth)
                assert answer.status_code == 200, answer.text
                return answer.json()  # type: ignore[no-any-return]

            admin = Operator(server, fresh("user"), alice.tenant, "ADMIN")

            async def everything() -> int:  # both merged: the server's figures, which only an ADMIN reads
                stats = (await client.get("/api/v1/query/stats", headers=admin.auth)).json()
                return stats["server"]["topology"]["nodes_by_type"]["host"] == 2 \
                    and stats["topology"]["nodes_by_type"]["host"] == 1  # theirs: the tenant's

            await eventually(everything)
            seen, cursor = [], None
            while True:
                answer = await page(cursor)
                seen += list(answer["topology"]["nodes"].values())
                cursor = answer["page"]["next_cursor"]
                if cursor is None:
                    break
            assert seen and {node["agent_id"] for node in seen} == {"pa-1"}
            # the same request without a token is refused, as every protected read
            assert (await client.get(TOPOLOGY, params={"limit": 1})).status_code == 401
