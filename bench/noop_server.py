"""The baseline for bench/ingest.py: a no-op Quart-Trio POST handler served by
Hypercorn's trio worker in-process, with the same Hypercorn settings as
``trioscope serve`` (backlog, keep-alive, no access log). bench/commands.py
uses its no-op GET (/health) and no-op long poll (/wait?timeout=N: 204 after
N seconds).

    python bench/noop_server.py PORT
"""

from __future__ import annotations

import sys

import trio
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from trioscope.config import Settings
from trioscope.server import hypercorn_config

app = QuartTrio("noop")
app.config["MAX_CONTENT_LENGTH"] = 10 * 1024 * 1024


@app.post("/api/v1/reports")
async def accept() -> Response:
    await request.get_data()
    return Response(b'{"status":"accepted"}', status=202, content_type="application/json")


@app.get("/health")
async def health() -> Response:
    return Response(b'{"status":"healthy"}', content_type="application/json")


@app.get("/wait")
async def wait() -> Response:
    """A no-op long poll: holds the request up to ``timeout`` seconds (≤ 120), then 204."""
    raw = request.args.get("timeout", "30")
    timeout = min(int(raw), 120) if raw.isdigit() else 30
    with trio.move_on_after(timeout):
        await trio.Event().wait()
    return Response(b"", status=204, headers={"Cache-Control": "no-cache"})


if __name__ == "__main__":
    import attrs

    defaults = Settings.defaults()
    settings = attrs.evolve(defaults, server=attrs.evolve(defaults.server, host="127.0.0.1", port=int(sys.argv[1])))
    print(f"trioscope listening on http://127.0.0.1:{sys.argv[1]}", flush=True)
    trio.run(serve, app, hypercorn_config(settings))
