"""Following a container's log (``docker.logs`` with ``follow: true``): its
lines, as the engine writes them, sent to the server in signed batches
(``POST /api/v1/agent/commands/logs``) until the server says the follow ended
(410: stopped by the user, a time or volume limit), the command is cancelled,
or its timeout passes.

Bounded here too, whatever the server allows: at most ``LINES_PER_SECOND``
lines a second leave the probe (the rest are dropped and counted), lines are
cut at ``MAX_LINE`` bytes of UTF-8, and at most ``BUFFERED`` lines and
``BUFFERED_BYTES`` of them wait between the engine and the sender (a
container writing faster, or a server slower, loses lines, not memory).
The engine's blocking stream is read in worker threads (one for stdout, one
for stderr, so each line says which) and closed to stop them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import trio

from ._answers import json_of
from ._executor import ControlError, _container, _int
from ._refusals import REFUSING, error_text, refusal

if TYPE_CHECKING:
    import docker  # loaded with the follow's client (``_engine.connect``)

log = logging.getLogger("trioscope_probe")

MAX_FOLLOWS = 5
"""Follows this probe runs at once; more fail at once."""
LINES_PER_SECOND = 200
MAX_LINE = 16 * 1024
"""Bytes of a line's message in UTF-8 at most (cut on a character's boundary)."""
BUFFERED = 2000
BUFFERED_BYTES = 4 * 1024 * 1024
"""Memory the lines waiting for the sender may hold, per follow: 2,000 lines of
16 Ki characters, one of them an emoji (Python then keeps 4 bytes a character),
were ~150 MB a follow while the server was slow, five of them ~750 MB in a
process that runs as root."""
ENTRY_OVERHEAD = 512
"""Bytes counted for a waiting line's dict, timestamp, level and source."""
BATCH_LINES = 200
BATCH_BYTES = 256 * 1024
"""Bytes of lines a request carries at most (a batch larger is sent in parts):
200 lines of 16 Ki emoji were 39 MB, refused 413 by any server."""
BATCH_SECONDS = 1.0
"""At most one batch a second per follow: five busy follows stay well inside
the server's per-agent request rate (600 a minute by default)."""
QUIET_SECONDS = 10.0
"""Without lines for this long, an empty batch asks the server whether the follow goes on."""
STREAM_TIMEOUT = 10
"""The engine client's read timeout for follows: how long a stopped follow's
thread may still wait on a quiet stream, and how often a quiet stream is opened again."""
LEVELS = {"stdout": "info", "stderr": "error"}
"""A container's streams carry no level: stderr lines are shown as errors."""

Post = Callable[[bytes], Awaitable[httpx.Response]]


_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")
"""The engine's ``timestamps`` prefix: RFC 3339 with up to nanoseconds."""


def _stamp_key(raw: bytes) -> tuple[int, int] | None:
    """When a line was written, as (unix seconds, nanoseconds), to compare lines
    of two openings of a stream; None without a readable timestamp."""
    found = _STAMP.fullmatch(raw.partition(b" ")[0].decode("ascii", "replace"))
    if found is None:
        return None
    head, fraction, offset = found.groups()
    moment = datetime.fromisoformat(head + ("+00:00" if offset == "Z" else offset))
    return int(moment.timestamp()), int((fraction or "0")[:9].ljust(9, "0"))


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
    return {"timestamp": timestamp, "level": LEVELS[source], "message": _cut(message), "source": source}


def _cut(message: bytes) -> str:
    """``message`` as text of at most ``MAX_LINE`` bytes of UTF-8 (a longer one
    cut on a character's boundary and ended with "…"), bad bytes replaced."""
    line = message[:MAX_LINE].decode("utf-8", "replace")
    if len(message) <= MAX_LINE:
        line = line.rstrip("\r")
        encoded = line.encode()
        if len(encoded) <= MAX_LINE:
            return line
    else:
        encoded = line.encode()
    # A bad byte is replaced by 3 (U+FFFD): decoded, a line may grow.
    return encoded[:MAX_LINE - 3].decode("utf-8", "ignore") + "…"


def _size(entry: dict[str, Any]) -> int:
    """Memory a waiting line holds, as Python keeps its text."""
    return sys.getsizeof(entry["message"]) + ENTRY_OVERHEAD


def _parts(batch: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``batch`` in consecutive parts of at most ``BATCH_BYTES`` of lines each
    (a line is at most ``MAX_LINE`` bytes of UTF-8: one fits)."""
    parts: list[list[dict[str, Any]]] = []
    size = BATCH_BYTES
    for entry in batch:
        length = len(entry["message"].encode()) + 100  # its timestamp, level, source and JSON's quotes
        if size + length > BATCH_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(entry)
        size += length
    return parts


class SeenLines:
    """Which lines of a stream opened again (``since`` the newest line's second)
    were passed on already. The engine's timestamps may be whole seconds
    (Podman's are): lines are told apart by their moment and how many of that
    moment were passed."""

    def __init__(self) -> None:
        self.newest: tuple[int, int] | None = None
        self.same = 0
        """Lines passed on that were written at ``newest``."""
        self.skip_before: tuple[int, int] | None = None
        self.skip_at = 0

    def reopened(self) -> None:
        """The stream starts again: what it repeats is skipped."""
        self.skip_before, self.skip_at = self.newest, self.same

    def passes(self, key: tuple[int, int] | None) -> bool:
        """Whether a line written at ``key`` (None: unknown) is new."""
        if key is not None and self.skip_before is not None:
            if key < self.skip_before:
                return False
            if key == self.skip_before and self.skip_at > 0:
                self.skip_at -= 1
                return False
        if key is not None:
            self.newest, self.same = (self.newest, self.same + 1) if key == self.newest else (key, 1)
        return True


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
        self.stopped = threading.Event()
        """Set when the follow ends: the reading threads open no stream after it."""
        self.sent = self.dropped = 0
        self.queued = 0
        """Bytes the lines in the channel hold (``_size``), at most ``BUFFERED_BYTES``."""
        self.ended: str | None = None
        self.engine_lost = False
        """A reading thread found the engine gone (the follow ends ``engine_unreachable``)."""

    async def run(self) -> dict[str, Any]:
        """Follow until the server ends it, the container stops or the caller
        cancels; answers the result."""
        token = trio.lowlevel.current_trio_token()
        refused: ControlError | None = None
        try:
            async with trio.open_nursery() as nursery:
                async with self.send:
                    for source in ("stdout", "stderr"):
                        nursery.start_soon(self._read, source, self.send.clone(), token)
                try:
                    await self._forward()
                except ControlError as exc:  # raised from the nursery it would be a group the caller never matched
                    refused = exc
                nursery.cancel_scope.cancel()
        finally:
            self.stopped.set()
            self._close()
        if refused is not None:
            raise refused
        return {"container_id": self.container.id, "lines": self.sent, "dropped": self.dropped,
                "ended": self.ended or "stopped"}

    def _close(self) -> None:
        for stream in list(self.streams):
            try:
                stream.close()
            except Exception as exc:  # noqa: BLE001  # a stream already broken: nothing left to stop
                log.debug("closing a log stream of %s: %s", self.command_id, exc)

    async def _read(self, source: str, send: trio.MemorySendChannel[dict[str, Any]],
                    token: trio.lowlevel.TrioToken) -> None:
        """One stream's lines into ``send``, closed when the container stopped
        (once both are, the follow ends)."""
        def push(lines: list[bytes]) -> None:
            for raw in lines:
                if not self._queue(send, _entry(source, raw)):
                    return  # the follow ended: the thread stops at its next chunk or when its stream closes

        def hand_over(lines: list[bytes]) -> bool:
            try:
                trio.from_thread.run_sync(push, lines, trio_token=token)
            except trio.RunFinishedError:  # the probe is ending
                return False
            return True

        async with send:
            # abandon_on_cancel: the thread ends once its stream is closed (``_close``),
            # or at its next read timeout.
            await trio.to_thread.run_sync(self._follow_stream, source, hand_over, abandon_on_cancel=True)

    def _queue(self, send: trio.MemorySendChannel[dict[str, Any]], entry: dict[str, Any]) -> bool:
        """Queue a line for the sender, or drop it (counted) if ``BUFFERED``
        lines or ``BUFFERED_BYTES`` wait already; False once the follow ended."""
        size = _size(entry)
        if self.queued + size > BUFFERED_BYTES:
            self.dropped += 1
            return True
        try:
            send.send_nowait(entry)
        except trio.WouldBlock:
            self.dropped += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        else:
            self.queued += size
        return True

    async def _next(self) -> dict[str, Any]:
        """The next queued line (``trio.EndOfChannel`` once both streams ended)."""
        entry = await self.receive.receive()
        self.queued -= _size(entry)
        return entry

    def _follow_stream(self, source: str, hand_over: Callable[[list[bytes]], bool]) -> None:
        """Read one stream of the container until it stops (worker thread).

        The engine may hold a quiet stream's answer until the first line
        (Podman does), and the client's read timeout ends a quiet stream: it is
        opened again from the newest line's second, lines already passed
        skipped, for as long as the container runs."""
        import docker.errors  # loaded with the follow's client (``_engine.connect``): a lookup
        import requests.exceptions

        since: int | None = None
        seen = SeenLines()
        while not self.stopped.is_set():
            seen.reopened()
            try:
                stream = self.container.logs(stdout=source == "stdout", stderr=source == "stderr", stream=True,
                                             follow=True, timestamps=True,
                                             **({"tail": self.tail} if since is None else {"since": since}))
                self.streams.append(stream)
                if self.stopped.is_set():  # stopped while it opened: _close may have missed it
                    stream.close()
                pending = b""
                skipping = False
                for chunk in stream:
                    start = 0
                    if skipping:  # the rest of a line already sent cut: up to its end, left out
                        start = chunk.find(b"\n") + 1
                        if not start:
                            continue
                        skipping = False
                    pending += chunk[start:]
                    *lines, pending = pending.split(b"\n")
                    if len(pending) > 4 * MAX_LINE:
                        # A line without end yet: sent once, cut (``_entry``), the rest of it left
                        # out; in pieces, a 3 MB line was ~46 entries of the follow's whole volume.
                        lines.append(pending)
                        pending, skipping = b"", True
                    fresh = [raw for raw in lines if seen.passes(_stamp_key(raw))]
                    if fresh and not hand_over(fresh):
                        return
                if pending and not hand_over([pending]):
                    return
            except (requests.exceptions.RequestException, docker.errors.DockerException) as exc:
                if isinstance(exc, docker.errors.NotFound):
                    return
                log.debug("log stream of %s ended: %s", self.command_id, exc)
            if self.stopped.is_set() or not self._running():
                return
            since = max(1, seen.newest[0] if seen.newest is not None else int(time.time()) - 1)

    def _running(self) -> bool:
        import docker.errors  # loaded with the follow's client (``_engine.connect``): a lookup
        import requests.exceptions

        try:
            self.container.reload()
        except docker.errors.APIError:
            return False  # the engine answered: the container is gone (Podman says 500 for a removed one)
        except (requests.exceptions.RequestException, docker.errors.DockerException) as exc:
            # Not the container's end: the engine's. Said as such (it was
            # "container_stopped" while the container ran on).
            self.engine_lost = True
            log.warning("following the log of %s: the container engine cannot be reached (%s); the follow ends",
                        self.command_id, type(exc).__name__)
            return False
        return bool(self.container.status in ("running", "paused", "restarting"))

    async def _forward(self) -> None:
        """Batches of what the readers queued, at most ``LINES_PER_SECOND``;
        an empty one after ``QUIET_SECONDS`` without lines, to hear whether the
        server still wants them (its time limit passes on a quiet container too)."""
        allowance, refilled = float(LINES_PER_SECOND), trio.current_time()
        while self.ended is None:
            batch: list[dict[str, Any]] = []
            try:
                with trio.move_on_after(QUIET_SECONDS):
                    batch.append(await self._next())
                with trio.move_on_after(BATCH_SECONDS):
                    while batch and len(batch) < BATCH_LINES:
                        batch.append(await self._next())
            except trio.EndOfChannel:
                for part in _parts(batch):
                    await self._send(part)
                self.ended = self.ended or ("engine_unreachable" if self.engine_lost else "container_stopped")
                return
            now = trio.current_time()
            allowance = min(float(LINES_PER_SECOND), allowance + (now - refilled) * LINES_PER_SECOND)
            refilled = now
            keep = int(allowance)
            quiet = not batch
            if keep < len(batch):
                self.dropped += len(batch) - keep
                batch = batch[:keep]
            allowance -= len(batch)
            if quiet:
                await self._send(batch)
            for part in _parts(batch):
                if self.ended is None:
                    await self._send(part)

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        body = {"command_id": self.command_id, "deployment_hash": self.deployment_hash, "entries": batch}
        try:
            response = await self.post(json.dumps(body, ensure_ascii=False).encode())  # an emoji 4 bytes, not 12
        except httpx.TransportError as exc:
            self.dropped += len(batch)
            log.warning("log lines of %s not sent: %s", self.command_id, exc)
            return
        if response.status_code == 200:
            answer = json_of(response)
            accepted = answer.get("accepted")
            self.sent += accepted if type(accepted) is int else len(batch)
            self.dropped += len(batch) - (accepted if type(accepted) is int else len(batch))
            if answer.get("following") is False:
                self.ended = str(answer.get("reason") or "stopped")
            return
        if response.status_code in (404, 410):
            error = json_of(response).get("error", {}) if response.headers.get("content-type", "").startswith(
                "application/json") else {}
            self.ended = str((error.get("details") or {}).get("reason") or "stopped")
            return
        self.dropped += len(batch)
        if response.status_code >= 400 and response.status_code != 429 and response.status_code < 500:
            refused = refusal(response, f"log lines of {self.command_id}")
            if response.status_code in REFUSING and not refused.for_good:
                # Time mends it (a clock off the server's): these lines are lost,
                # the follow goes on, as for a server that is away.
                log.warning("%s; following on", refused)
                return
            raise ControlError(f"the server refused log lines ({response.status_code}): {error_text(response)[:200]}")
