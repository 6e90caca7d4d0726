"""What transport-level abuse costs the server: memory for WebSocket messages that
never end or inflate, and connections held by request bodies that trickle.

    .venv/bin/python bench/abuse_memory.py [--rounds 3] [--message-mib 300] [--bomb-mib 512] [--slow 200]

Two servers in the same run, one after the other:

* ``hypercorn as is``: trioscope with Hypercorn's own WebSocket stream and
  connection task (``install_bounded_websockets`` and
  ``install_guarded_tcp_server`` turned into no-ops), i.e. the behaviour before
  issue 16;
* ``trioscope``: the server as shipped.

Against each (unauthenticated, on ``/api/v1/ws``):

1. never-finished message: ``--rounds`` connections each send continuation
   frames without FIN, up to ``--message-mib`` MiB or until the server ends
   the connection. Prints the server's RSS before, its peak (VmHWM), its RSS
   3 s after each client left, and what each client got to send.
2. compressed message: one permessage-deflate frame of ``--bomb-mib`` MiB of
   zeros (about 1/1000 of that on the wire), sent whether or not the server
   accepted the extension. Prints the peak and the RSS after.
3. slow bodies (``--body-timeout 3s``): ``--slow`` connections declare a 1 MB
   body and send one byte per second. Prints how many the server still holds
   3 s after their timeout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from servers import free_port, start, stop  # noqa: E402

MiB = 1024 * 1024
FRAME = 64 * 1024
BODY_TIMEOUT = 3.0
AS_IS = ("import sys, trioscope.server as s; "
         "s.install_bounded_websockets = s.install_guarded_tcp_server = lambda: None; "
         "from trioscope.cli import main; main(sys.argv[1:])")


def status_mib(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


async def handshake(port: int, *, deflate: bool = False) -> tuple[trio.SocketStream, WSConnection]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host=f"127.0.0.1:{port}", target="/api/v1/ws",
                                          extensions=[PerMessageDeflate()] if deflate else [])))
    while True:
        data = await stream.receive_some()
        if not data:
            raise RuntimeError("closed during the handshake")
        ws.receive_data(data)
        for event in ws.events():
            if not isinstance(event, AcceptConnection):
                raise RuntimeError(f"refused: {event}")
            return stream, ws


async def endless_message(port: int, total: int) -> int:
    """Bytes sent of one never-finished message before the server ended the connection."""
    stream, ws = await handshake(port)
    first = ws.send(BytesMessage(data=bytes(FRAME), message_finished=False))
    more = ws.send(BytesMessage(data=bytes(FRAME), message_finished=False))
    sent = 0
    try:
        await stream.send_all(first)
        sent += FRAME
        while sent < total:
            await stream.send_all(more)
            sent += FRAME
    except trio.BrokenResourceError:
        pass
    await stream.aclose()
    return sent


def deflated_message(size: int) -> bytes:
    deflate = PerMessageDeflate()
    deflate.finalize("permessage-deflate")
    return FrameProtocol(client=True, extensions=[deflate]).send_data(bytes(size), fin=True)


async def compressed_message(port: int, frame: bytes) -> None:
    stream, _ = await handshake(port, deflate=True)
    try:
        await stream.send_all(frame)
        with trio.move_on_after(5):
            while await stream.receive_some():
                pass
    except trio.BrokenResourceError:
        pass
    await stream.aclose()


async def slow_bodies(port: int, count: int) -> int:
    """How many of ``count`` trickled bodies are still connected 3 s after their timeout."""
    streams = []
    for _ in range(count):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"POST /api/v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 1000000\r\n\r\n")
        streams.append(stream)
    ended: set[int] = set()

    async def trickle(index: int, stream: trio.SocketStream) -> None:
        async def read() -> None:
            try:
                while await stream.receive_some():
                    pass
            except trio.BrokenResourceError:
                pass
            ended.add(index)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            try:
                while index not in ended:
                    await stream.send_all(b" ")
                    await trio.sleep(1)
            except trio.BrokenResourceError:
                pass
            await trio.sleep_forever()

    with trio.move_on_after(BODY_TIMEOUT + 3):
        async with trio.open_nursery() as nursery:
            for index, stream in enumerate(streams):
                nursery.start_soon(trickle, index, stream)
    open_after = count - len(ended)
    for stream in streams:
        await stream.aclose()
    return open_after


async def measure(name: str, argv: list[str], port: int, args: argparse.Namespace, bomb: bytes) -> None:
    server = start(argv)
    try:
        await trio.sleep(0.5)
        warm, _ = await handshake(port)
        await warm.aclose()
        before = status_mib(server.pid, "VmRSS")
        afters, sents = [], []
        for _ in range(args.rounds):
            sents.append(await endless_message(port, args.message_mib * MiB))
            await trio.sleep(3)
            afters.append(status_mib(server.pid, "VmRSS"))
        peak = status_mib(server.pid, "VmHWM")
        print(f"{name:<16} never-finished message: RSS before {before:5.0f} MiB, peak {peak:5.0f} MiB, "
              f"3 s after each client: {', '.join(f'{a:.0f}' for a in afters)} MiB; "
              f"sent per client: {', '.join(f'{s / MiB:.1f}' for s in sents)} MiB", flush=True)
        before = status_mib(server.pid, "VmRSS")
        await compressed_message(port, bomb)
        await trio.sleep(3)
        print(f"{name:<16} compressed message ({len(bomb) / 1024:.0f} KiB on the wire, {args.bomb_mib} MiB inflated): "
              f"RSS before {before:5.0f} MiB, peak {status_mib(server.pid, 'VmHWM'):5.0f} MiB, "
              f"after {status_mib(server.pid, 'VmRSS'):5.0f} MiB", flush=True)
        held = await slow_bodies(port, args.slow)
        print(f"{name:<16} slow bodies: {held} of {args.slow} connections still held "
              f"{BODY_TIMEOUT + 3:g} s after they started (--body-timeout {BODY_TIMEOUT:g}s)", flush=True)
    finally:
        stop(server)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--message-mib", type=int, default=300)
    parser.add_argument("--bomb-mib", type=int, default=512)
    parser.add_argument("--slow", type=int, default=200)
    args = parser.parse_args()
    started = time.monotonic()
    bomb = deflated_message(args.bomb_mib * MiB)
    for name, code in (("hypercorn as is", ["-c", AS_IS]), ("trioscope", ["-m", "trioscope"])):
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="trioscope-bench-") as data:
            argv = [sys.executable, *code, "serve", "--host", "127.0.0.1", "--port", str(port),
                    "--log-level", "warning", "--local-probe", "false", "--data-dir", data,
                    "--rate-per-address", "1000000", "--body-timeout", f"{BODY_TIMEOUT:g}s"]
            await measure(name, argv, port, args, bomb)
    print(f"({time.monotonic() - started:.0f} s; RSS figures from /proc/<pid>/status of the server process)")


if __name__ == "__main__":
    trio.run(main)
