"""The baseline for bench/live.py: a no-op Quart-Trio WebSocket broadcast under the
same Hypercorn settings as ``trioscope serve``: ``POST /broadcast`` queues the body
to every connected client, each connection's task sends it.

    python bench/noop_broadcast.py PORT
"""

from __future__ import annotations

import sys

import attrs
import trio
from hypercorn.trio import serve
from quart import Response, request, websocket
from quart_trio import QuartTrio

from trioscope.config import Settings
from trioscope.server import hypercorn_config

app = QuartTrio("noop-broadcast")
clients: set[trio.MemorySendChannel[str]] = set()


@app.websocket("/ws")
async def ws() -> None:
    send, receive = trio.open_memory_channel[str](16)
    clients.add(send)
    await websocket.accept()
    try:
        async for message in receive:
            await websocket.send(message)
    finally:
        clients.discard(send)


@app.post("/broadcast")
async def broadcast() -> Response:
    data = (await request.get_data()).decode()
    for client in list(clients):
        try:
            client.send_nowait(data)
        except trio.WouldBlock:
            pass
    return Response(b"{}", status=202, content_type="application/json")


if __name__ == "__main__":
    defaults = Settings.defaults()
    settings = attrs.evolve(defaults, server=attrs.evolve(defaults.server, host="127.0.0.1", port=int(sys.argv[1])))
    print(f"trioscope listening on http://127.0.0.1:{sys.argv[1]}", flush=True)
    trio.run(serve, app, hypercorn_config(settings))
