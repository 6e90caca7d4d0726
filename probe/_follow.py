"""Following a container's log (``docker.logs`` with ``follow: true``): its
lines, as the engine writes them, sent to the server in signed batches
(``POST /api/v1/agent/commands/logs``) until the server says the follow ended
(410: stopped by the user, a time or volume limit), the command is cancelled,
or its timeout passes.

Bounded here too, whatever the server allows: at most ``LINES_PER_SECOND``
lines a second leave the probe (the rest are dropped and counted), lines are
cut at ``MAX_LINE`` characters, and at most ``BUFFERED`` wait between the
engine and the sender (a container writing faster loses lines, not memory).
The engine's blocking stream is read in worker threads (one for stdout, one
for stderr, so each line says which) and closed to stop them.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import docker
import httpx
import trio

from ._executor import ControlError, _container, _int

log = logging.getLogger("trioscope_probe")

MAX_FOLLOWS = 5
"""Follows this probe runs at once; more fail at once."""
LINES_PER_SECOND = 200
MAX_LINE = 16 * 1024
BUFFERED = 2000
BATCH_LINES = 200
BATCH_SECONDS = 0.25
LEVELS = {"stdout": "info", "stderr": "error"}
"""A container's streams carry no level: stderr lines are shown as errors."""

Post = Callable[[bytes], Awaitable[httpx.Response]]


_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")
"""The engine's ``timestamps`` prefix: RFC 3339 with up to nanoseconds."""


def _entry(source: str, raw: bytes) -> dict[str, Any]:
    """One line as the server takes it: the engine's timestamp in UTC, cut to
    microseconds (else now, and the line as it came), the line cut at ``MAX_LINE``."""
    stamp, _, message = raw.partition(b" ")
    found = _STAMP.fullmatch(stamp.decode("ascii", "replace"))
    if found is not None:
        head, fraction, offset = found.groups()
        moment = datetime.fromisoformat(head + ("+00:00" if offset == "Z" else offset)).astimezone(UTC)
        timestamp = moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction[:6]}" if fraction else "") + "Z"
    else:
        timestamp, message = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), raw
    line = message.decode("utf-8", "replace").rstrip("\r")
    if len(line) > MAX_LINE:
        line = line[:MAX_LINE - 1] + "…"
    return {"timestamp": timestamp, "level": LEVELS[source], "message": line, "source": source}


class LogFollow:
    """One follow: engine streams in, batches out."""

    def __init__(self, client: docker.DockerClient, command_id: str, deployment_hash: str,
                 parameters: dict[str, Any], post: Post) -> None:
        self.client = client
        self.command_id = command_id
        self.deployment_hash = deployment_hash
        self.container = _container(client, parameters)
        self.tail = _int(parameters, "tail", 10, 0, 10_000)
        self.post = post
        self.send, self.receive = trio.open_memory_channel[dict[str, Any]](BUFFERED)
        self.streams: list[Any] = []
        self.sent = self.dropped = 0
        self.ended: str | None = None

    async def run(self) -> dict[str, Any]:
        """Follow until the server ends it or the caller cancels; answers the result."""
        token = trio.lowlevel.current_trio_token()
        try:
            async with trio.open_nursery() as nursery:
                for source in ("stdout", "stderr"):
                    stream = self.container.logs(stdout=source == "stdout", stderr=source == "stderr",
                                                 stream=True, follow=True, timestamps=True,
                                                 tail=self.tail if self.tail else 0)
                    self.streams.append(stream)
                    nursery.start_soon(self._read, stream, source, token)
                await self._forward()
                nursery.cancel_scope.cancel()
        finally:
            self._close()
        return {"container_id": self.container.id, "lines": self.sent, "dropped": self.dropped,
                "ended": self.ended or "stopped"}

    def _close(self) -> None:
        for stream in self.streams:
            try:
                stream.close()
            except Exception as exc:  # noqa: BLE001  # a stream already broken: nothing left to stop
                log.debug("closing a log stream of %s: %s", self.command_id, exc)

    async def _read(self, stream: Any, source: str, token: trio.lowlevel.TrioToken) -> None:
        def push(lines: list[bytes]) -> None:
            for raw in lines:
                try:
                    self.send.send_nowait(_entry(source, raw))
                except trio.WouldBlock:
                    self.dropped += 1

        def read() -> None:
            pending = b""
            for chunk in stream:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if len(pending) > 4 * MAX_LINE:  # a line without end: sent in pieces
                    lines.append(pending)
                    pending = b""
                if lines:
                    trio.from_thread.run_sync(push, lines, trio_token=token)

        # abandon_on_cancel: the thread ends once its stream is closed (``_close``).
        await trio.to_thread.run_sync(read, abandon_on_cancel=True)

    async def _forward(self) -> None:
        """Batches of what the readers queued, at most ``LINES_PER_SECOND``."""
        allowance, refilled = float(LINES_PER_SECOND), trio.current_time()
        while self.ended is None:
            batch: list[dict[str, Any]] = [await self.receive.receive()]
            with trio.move_on_after(BATCH_SECONDS):
                while len(batch) < BATCH_LINES:
                    batch.append(await self.receive.receive())
            now = trio.current_time()
            allowance = min(float(LINES_PER_SECOND), allowance + (now - refilled) * LINES_PER_SECOND)
            refilled = now
            keep = int(allowance)
            if keep < len(batch):
                self.dropped += len(batch) - keep
                batch = batch[:keep]
            allowance -= len(batch)
            if batch:
                await self._send(batch)

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        body = {"command_id": self.command_id, "deployment_hash": self.deployment_hash, "entries": batch}
        try:
            response = await self.post(json.dumps(body).encode())
        except httpx.TransportError as exc:
            self.dropped += len(batch)
            log.warning("log lines of %s not sent: %s", self.command_id, exc)
            return
        if response.status_code == 200:
            answer = response.json()
            accepted = answer.get("accepted")
            self.sent += accepted if type(accepted) is int else len(batch)
            self.dropped += len(batch) - (accepted if type(accepted) is int else len(batch))
            if answer.get("following") is False:
                self.ended = str(answer.get("reason") or "stopped")
            return
        if response.status_code in (404, 410):
            error = response.json().get("error", {}) if response.headers.get("content-type", "").startswith(
                "application/json") else {}
            self.ended = str((error.get("details") or {}).get("reason") or "stopped")
            return
        self.dropped += len(batch)
        if response.status_code >= 400 and response.status_code != 429 and response.status_code < 500:
            raise ControlError(f"the server refused log lines ({response.status_code}): {response.text[:200]}")
