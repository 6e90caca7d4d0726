"""How the probe turns the engine's log lines into the server's log entries."""

from __future__ import annotations

import sys

import httpx
import requests.exceptions
import pytest

from trioscope_probe._executor import ControlError
from trioscope_probe._follow import BATCH_BYTES, BUFFERED, MAX_LINE, LogFollow, SeenLines, _entry, _stamp_key


def test_the_engines_timestamp_is_kept_in_utc_to_the_microsecond():
    entry = _entry("stdout", b"2026-12-02T11:13:21.085123456Z hello world")
    assert entry == {"timestamp": "2026-12-02T11:13:21.085123Z", "level": "info", "message": "hello world",
                     "source": "stdout"}
    shifted = _entry("stderr", b"2026-12-02T12:13:21+01:00 oops\r")
    assert (shifted["timestamp"], shifted["message"], shifted["level"]) == ("2026-12-02T11:13:21Z", "oops", "error")


def test_a_line_without_a_timestamp_is_kept_whole_and_stamped_now():
    entry = _entry("stdout", b"no stamp here")
    assert entry["message"] == "no stamp here" and entry["timestamp"].endswith("Z")


def test_long_lines_are_cut_and_bad_bytes_replaced():
    entry = _entry("stdout", b"2026-12-02T11:13:21Z " + b"x" * (MAX_LINE * 2))
    assert len(entry["message"].encode()) == MAX_LINE and entry["message"].endswith("…")
    assert _entry("stdout", b"2026-12-02T11:13:21Z caf\xe9")["message"] == "caf\ufffd"


@pytest.mark.parametrize("line", [
    "😀".encode() * MAX_LINE,  # 4 bytes a character
    b"a" * (MAX_LINE - 2) + "😀".encode(),  # cut within a character
    b"\xff" * MAX_LINE,  # each bad byte shown as U+FFFD, 3 bytes of UTF-8
])
def test_a_line_is_cut_to_max_line_bytes_on_a_characters_boundary(line: bytes) -> None:
    message = _entry("stdout", b"2026-12-02T11:13:21Z " + line)["message"]
    assert len(message.encode()) <= MAX_LINE and message.endswith("…")
    assert "\ufffd" not in message[:-1] or line.startswith(b"\xff")


def test_lines_of_two_openings_compare_by_when_they_were_written():
    assert _stamp_key(b"2026-12-02T11:13:21.000000001Z a") > _stamp_key(b"2026-12-02T11:13:21Z b")
    assert _stamp_key(b"2026-12-02T12:13:21.5+01:00 a") == _stamp_key(b"2026-12-02T11:13:21.500Z b")
    assert _stamp_key(b"no stamp") is None


def test_a_stream_opened_again_skips_what_it_passed_even_with_whole_second_timestamps():
    seen = SeenLines()
    seen.reopened()  # the first opening: nothing to skip
    assert [seen.passes(k) for k in [(10, 0), (11, 0), (11, 0)]] == [True, True, True]
    seen.reopened()  # since second 11: both lines of 11 come again, then new ones
    assert [seen.passes(k) for k in [(11, 0), (11, 0), (11, 0), (12, 0)]] == [False, False, True, True]
    seen.reopened()
    assert [seen.passes(k) for k in [(11, 0), (12, 0), (12, 0)]] == [False, False, True]
    assert seen.passes(None) is True


class _Containers:
    def get(self, name: str) -> object:
        return object()


class _Client:
    containers = _Containers()


def _answer(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": "m"}})


@pytest.mark.parametrize(("status", "code", "goes_on"), [
    (401, "clock_skew", True),  # time mends it: these lines are lost, the follow goes on
    (401, "invalid_token", False),  # only an operator mends it
    (403, "wrong_deployment", False),
])
async def test_a_refusal_time_mends_loses_a_batch_not_the_follow(status: int, code: str, goes_on: bool) -> None:
    async def post(body: bytes) -> httpx.Response:
        return _answer(status, code)

    follow = LogFollow(_Client(), "cmd-1", "hash", {"container": "web"}, post)  # type: ignore[arg-type]
    if goes_on:
        await follow._send([{"message": "a"}, {"message": "b"}])
        assert (follow.dropped, follow.ended) == (2, None)
    else:
        with pytest.raises(ControlError, match=str(status)):
            await follow._send([{"message": "a"}])


class _LoggingContainer:
    """A container whose log is a line of 3 MB (in 64 KiB chunks) between two short ones."""

    id = "c1"
    status = "exited"

    def logs(self, **_: object) -> object:
        line = b"2026-12-02T11:13:21Z " + b"a" * 3_000_000 + b"\n"
        data = b"2026-12-02T11:13:20Z before\n" + line + b"2026-12-02T11:13:22Z after\n"
        return iter([data[i:i + 65536] for i in range(0, len(data), 65536)])

    def reload(self) -> None:
        pass


def test_a_multi_megabyte_line_is_sent_once_cut_and_the_rest_of_it_left_out() -> None:
    """In 64 KiB pieces a 3 MB line was ~46 entries, the follow's whole volume
    gone in two seconds (a reviewer's)."""
    class Containers:
        def get(self, name: str) -> object:
            return _LoggingContainer()

    client = type("Client", (), {"containers": Containers()})()
    follow = LogFollow(client, "cmd-1", "hash", {"container": "web"}, None)  # type: ignore[arg-type]
    handed: list[bytes] = []
    follow._follow_stream("stdout", lambda lines: handed.extend(lines) or True)
    messages = [_entry("stdout", raw)["message"] for raw in handed]
    assert len(messages) == 3 and messages[0] == "before" and messages[2] == "after"
    assert messages[1].startswith("aaa") and len(messages[1].encode()) == MAX_LINE


class _WideContainer:
    """A running container that wrote 200 lines of 16 Ki emoji, then stopped."""

    id = "c2"
    status = "exited"

    def logs(self, **asked: object) -> object:
        line = "2026-12-02T11:13:21Z ".encode() + "😀".encode() * MAX_LINE + b"\n"
        return iter([line] * 200 if asked.get("stdout") else [])

    def reload(self) -> None:
        pass


async def test_wide_lines_go_in_parts_the_server_takes_and_a_refusal_fails_the_follow_alone() -> None:
    """200 lines of 16 Ki emoji were one 39 MB request (an emoji 12 bytes of
    JSON escapes); the server's 413 reached the probe's top as a group of
    exceptions that nothing caught, and the whole probe ended."""
    class Containers:
        def get(self, name: str) -> object:
            return _WideContainer()

    client = type("Client", (), {"containers": Containers()})()
    bodies: list[int] = []

    async def post(body: bytes) -> httpx.Response:
        bodies.append(len(body))
        return httpx.Response(200, json={"accepted": body.count(b'"message"'), "following": True})

    follow = LogFollow(client, "cmd-1", "hash", {"container": "web"}, post)  # type: ignore[arg-type]
    result = await follow.run()
    assert result["lines"] == 200 and result["ended"] == "container_stopped", result
    assert max(bodies) <= BATCH_BYTES + 4096 and len(bodies) > 1, bodies

    async def refuse(body: bytes) -> httpx.Response:
        return _answer(413, "payload_too_large")

    follow = LogFollow(client, "cmd-2", "hash", {"container": "web"}, refuse)  # type: ignore[arg-type]
    with pytest.raises(ControlError, match="413"):  # a ControlError, which the probe's agent fails the command for
        await follow.run()


class _EngineGoneContainer(_WideContainer):
    """A container whose stream ended because the engine went away (asked again, it does not answer)."""

    def logs(self, **asked: object) -> object:
        return iter([])

    def reload(self) -> None:
        raise requests.exceptions.ConnectionError("('Connection aborted.', ConnectionRefusedError(111))")


async def test_a_follow_whose_engine_went_away_says_so_not_that_the_container_stopped() -> None:
    class Containers:
        def get(self, name: str) -> object:
            return _EngineGoneContainer()

    client = type("Client", (), {"containers": Containers()})()

    async def post(body: bytes) -> httpx.Response:
        return httpx.Response(200, json={"accepted": 0, "following": True})

    result = await LogFollow(client, "cmd-1", "hash", {"container": "web"}, post).run()  # type: ignore[arg-type]
    assert result["ended"] == "engine_unreachable", result


async def test_the_lines_waiting_for_a_slow_server_hold_at_most_their_bytes() -> None:
    """2,000 lines of 16 Ki characters, one an emoji, waited for a slow server: ~150 MB a
    follow, five follows ~750 MB in a process that runs as root (a reviewer's)."""
    from trioscope_probe._follow import BUFFERED_BYTES

    follow = LogFollow(_Client(), "cmd-1", "hash", {"container": "web"}, None)  # type: ignore[arg-type]
    line = "2026-12-02T11:13:21Z ".encode() + "😀".encode() + b"a" * (MAX_LINE - 4)
    for _ in range(BUFFERED):
        assert follow._queue(follow.send, _entry("stdout", line))
    assert 0 < follow.queued <= BUFFERED_BYTES and follow.dropped > 0
    waiting = [await follow._next() for _ in range(BUFFERED - follow.dropped)]  # the sender takes them
    assert sum(sys.getsizeof(entry["message"]) for entry in waiting) <= BUFFERED_BYTES
    assert follow.queued == 0 and follow.receive.statistics().current_buffer_used == 0
    assert follow._queue(follow.send, _entry("stdout", line)) and follow.queued > 0  # room again
