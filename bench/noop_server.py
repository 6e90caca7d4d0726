"""The baseline for bench/ingest.py: a no-op Quart-Trio POST handler served by
Hypercorn's trio worker in-process, with the same Hypercorn settings as
``trioscope serve`` (backlog, keep-alive, no access log). bench/commands.py
uses its no-op GET (/health), no-op long poll (/wait?timeout=N: 204 after
N seconds) and no-op versions of the three requests of a command's round trip
(/noop/create, /noop/poll, /noop/report: read the body, answer JSON of the
same size, nothing else).

    python bench/noop_server.py PORT [--workers N]
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


@app.post("/api/v1/metrics/write")
async def accept_metrics() -> Response:
    """The baseline of bench/metrics_api.py's writes: the body read, 204."""
    await request.get_data()
    return Response(b"", status=204)


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


# A delivery as the agent receives it (command under "command" and "item", meta): ~1.3 KB.
_DELIVERY = b'{"command":' + b'{"id":"cmd_0","parameters":{},"x":"' + b"x" * 560 + b'"}' + b',"item":' + \
    b'{"id":"cmd_0","parameters":{},"x":"' + b"x" * 560 + b'"}' + b',"meta":{"next_poll_secs":1}}'


@app.post("/noop/create")
async def noop_create() -> Response:
    await request.get_data()
    return Response(b'{"command_id":"cmd_0000000000000000","status":"queued","estimated_start":"2026-01-01T00:00:00Z"}',
                    status=202, content_type="application/json")


@app.get("/noop/poll")
async def noop_poll() -> Response:
    return Response(_DELIVERY, content_type="application/json", headers={"Cache-Control": "no-cache"})


@app.post("/noop/report")
async def noop_report() -> Response:
    await request.get_data()
    return Response(b'{"status":"completed","command_id":"cmd_0000000000000000"}', content_type="application/json")


def serve_workers(port: int, workers: int) -> None:
    """``workers`` processes serving one socket bound here (as ``trioscope serve
    --workers``: the kernel hands each connection to one), stopped with this one."""
    import signal
    import socket
    import subprocess

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    sock = socket.create_server(("127.0.0.1", port), backlog=2048)
    children = [subprocess.Popen([sys.executable, __file__, "--fd", str(sock.fileno())], pass_fds=[sock.fileno()])
                for _ in range(workers)]
    print(f"trioscope listening on http://127.0.0.1:{port}", flush=True)

    signal.sigwait({signal.SIGTERM, signal.SIGINT})  # blocked above, before the children started
    for child in children:
        child.kill()
        child.wait()


if __name__ == "__main__":
    import attrs

    defaults = Settings.defaults()
    if sys.argv[1] == "--fd":  # one of --workers: serve the parent's socket
        import signal

        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})  # the parent's mask is inherited
        config = hypercorn_config(defaults)
        config.bind = [f"fd://{sys.argv[2]}"]
        trio.run(serve, app, config)
    elif len(sys.argv) > 3 and sys.argv[2] == "--workers":
        serve_workers(int(sys.argv[1]), int(sys.argv[3]))
    else:
        settings = attrs.evolve(defaults, server=attrs.evolve(defaults.server, host="127.0.0.1", port=int(sys.argv[1])))
        print(f"trioscope listening on http://127.0.0.1:{sys.argv[1]}", flush=True)
        trio.run(serve, app, hypercorn_config(settings))
