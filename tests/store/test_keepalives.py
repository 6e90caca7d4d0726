"""Every connection to PostgreSQL carries TCP keepalives and a user timeout
(``trioscope.store._postgres.KEEPALIVES``): a database that vanishes without
closing the connection (a cut network, a paused VM) is found dead in seconds,
not when the kernel gives up, while a store thread blocks on the socket. A URL
that sets its own keep its own."""

from __future__ import annotations

import contextlib

from trioscope.store._listen import _connect as connect_feed
from trioscope.store._postgres import KEEPALIVES, connect, connection_options
from trioscope.store._postgres_reader import PostgresReader
from trioscope.store._trio_connection import connect_trio


def _given(parameters: dict[str, str]) -> dict[str, str]:
    return {key: parameters.get(key, "") for key in KEEPALIVES}


def test_a_urls_own_settings_win_and_the_rest_are_added() -> None:
    options = connection_options("postgresql://u@db/x?keepalives_idle=60&connect_timeout=3")
    assert "keepalives_idle" not in options  # the URL's 60 stays
    assert options["tcp_user_timeout"] == KEEPALIVES["tcp_user_timeout"] and options["keepalives"] == "1"


def test_the_writer_the_readers_and_the_change_feed_connect_with_keepalives(postgres_url: str) -> None:
    with contextlib.closing(connect(postgres_url)) as writer:
        assert _given(writer.info.get_parameters()) == KEEPALIVES
    reader = PostgresReader(postgres_url, pool_size=1)
    try:
        with reader.pool.connection() as pooled:
            assert _given(pooled.info.get_parameters()) == KEEPALIVES
    finally:
        reader.close()
    with contextlib.closing(connect_feed(postgres_url)) as feed:
        assert _given(feed.info.get_parameters()) == KEEPALIVES
    separator = "&" if "?" in postgres_url else "?"
    with contextlib.closing(connect(f"{postgres_url}{separator}keepalives_idle=60")) as own:
        assert own.info.get_parameters()["keepalives_idle"] == "60"


async def test_the_trio_connections_connect_with_keepalives(postgres_url: str) -> None:
    connection = await connect_trio(postgres_url)
    try:
        found = {o.keyword.decode(): (o.val or b"").decode() for o in connection._pgconn.info}
        assert _given(found) == KEEPALIVES
    finally:
        connection.discard()

