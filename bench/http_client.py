"""A lean HTTP/1.1 client connection for the load generators (bench/poll_holder.py,
bench/loadgen.py): trio sockets, requests formatted as bytes, responses parsed
by httptools (llhttp, in C).

The load generators share the machine's 2 cores with the servers they measure,
so their CPU is CPU a server under test does not get: with h11 (pure Python)
parsing, a driver of the e2e command round spent 0.41 ms of CPU per command
(create, poll, report), about half of it in h11; with this, 0.19 ms
(cProfile of ``poll_holder.py e2e`` against one server, same rate).
"""

from __future__ import annotations

import httptools
import trio


class Closed(Exception):
    """The server closed the connection."""


class Http:
    """One keep-alive HTTP/1.1 client connection, one request at a time.
    Raises ``Closed`` when the server closed it (or said, in its last
    response, that it would), ``httptools.HttpParserError`` on a response that
    is not HTTP."""

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self.stream = stream
        self.host = host
        self.head = f"Host: {host}\r\n".encode()
        self.parser = httptools.HttpResponseParser(self)
        self.body: list[bytes] = []
        self.complete = False
        self.keep_alive = True
        """False once a response said the server closes the connection after it."""

    # httptools' callbacks
    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # read here: llhttp resets it once the message is complete

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.complete = True

    @classmethod
    async def connect(cls, host: str, port: int, source: str | None = None) -> Http:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        try:
            if source:
                await sock.bind((source, 0))
            await sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return cls(trio.SocketStream(sock), f"{host}:{port}")

    async def send(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        if not self.keep_alive:
            raise Closed()
        lines = [f"{method} {target} HTTP/1.1\r\n".encode(), self.head]
        lines += [f"{name}: {value}\r\n".encode() for name, value in headers]
        if body or method == "POST":
            lines.append(f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode())
        lines += [b"\r\n", body]
        await self.stream.send_all(b"".join(lines))

    async def receive(self) -> tuple[int, bytes]:
        self.body.clear()
        self.complete = False
        while not self.complete:
            data = await self.stream.receive_some(65536)
            if not data:
                raise Closed()
            self.parser.feed_data(data)  # raises httptools.HttpParserError on a malformed response
        return self.parser.get_status_code(), b"".join(self.body)

    async def request(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> tuple[int, bytes]:
        await self.send(method, target, headers, body)
        return await self.receive()

    async def aclose(self) -> None:
        await self.stream.aclose()
