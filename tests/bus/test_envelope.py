"""A report as it travels on the bus, and the asyncio thread nats-py runs in."""

from __future__ import annotations

import asyncio
import time
import zlib

import msgspec
import orjson
import pytest
import trio
import zstandard

from tests.synthetic import host_report
from trioscope.bus import AsyncioThread, pack_report, unpack_report
from trioscope.bus._client import agent_subject
from trioscope.bus._envelope import BadEnvelope
from trioscope.domain.agents import ZSTD_MAGIC
from trioscope.domain.topology import node_scope, report_shape
from trioscope.wire import decode_report, encode


def test_a_report_comes_back_as_the_same_validated_report_with_its_receive_time() -> None:
    report = decode_report(host_report(3, timestamp=time.time() - 30))
    received = time.time()
    data, packed = pack_report(report, received, enrolled=True)
    envelope = unpack_report(data)
    assert envelope.report == report
    assert (envelope.received_at, envelope.enrolled) == (received, True)
    assert envelope.packed == packed and decode_report(orjson.loads(packed.unpack())) == report
    # Binary and smaller than the report's JSON, not the JSON itself.
    assert not data.startswith(b"{") and len(data) < len(orjson.dumps(host_report(3, timestamp=time.time())))


def test_what_a_probe_says_of_its_own_report_comes_back_with_it() -> None:
    """A probe sends only the sockets the server reads and counts the rest
    (``NetworkInfo.sockets``), says what it cut to fit the server's limits
    (``left_out``) and what it could not see of its host (``gaps``): a replica
    reading the stream must see what the receiving one did (the host's
    connections metric, the host node's ``left_out`` and ``gaps``)."""
    document = host_report(5, timestamp=time.time() - 30)
    document["network_info"]["sockets"] = 12_345
    document["left_out"] = {"processes": 7, "connections": 0, "containers": 1}
    document["gaps"] = {"unowned_sockets": 40, "hidden_threads": 300, "own_pid_namespace": False,
                        "own_network_namespace": True, "unreadable": ["memory", "connections"]}
    report = decode_report(document)
    data = pack_report(report, time.time(), enrolled=False)[0]
    for envelope in (unpack_report(data), unpack_report(data, defer_connections=True)):
        assert envelope.report.network_info is not None and envelope.report.network_info.sockets == 12_345
        assert envelope.report.left_out == report.left_out and report.left_out is not None
        assert envelope.report.gaps == report.gaps and report.gaps is not None


def test_an_envelope_of_the_previous_version_reads_alike_and_this_one_is_format_2_packed_with_zstandard() -> None:
    """Replicas of two versions share a stream while they are upgraded one by
    one: this one reads the previous version's envelopes (format 1, zlib);
    the previous version refuses this one's (a format it does not know)."""
    report = decode_report(host_report(4, timestamp=time.time() - 10))
    wire = orjson.dumps(encode(report))
    received = time.time()
    previous = msgspec.msgpack.encode({"format": 1, "report": zlib.compress(wire, 1), "received_at": received,
                                       "enrolled": False})
    envelope = unpack_report(previous)
    assert envelope.report == report and envelope.report.timestamp.tzinfo is report.timestamp.tzinfo
    assert envelope.packed.unpack() == wire  # an agent's latest report, as that version packed it
    assert envelope.shape is None  # the previous version sends no shape: the topology finds it
    assert envelope.address is None  # nor the client's address: the roster knows none for it
    data, packed = pack_report(report, received, enrolled=False)
    assert orjson.loads(packed.unpack()) == encode(report)
    assert packed.data.startswith(ZSTD_MAGIC) and len(packed.data) < len(zlib.compress(wire, 1))
    assert msgspec.msgpack.decode(data) == {"format": 2, "report": packed.data, "received_at": received,
                                             "enrolled": False}


def test_the_publishing_replica_s_shape_digest_travels_with_the_report() -> None:
    report = decode_report(host_report(6, timestamp=time.time() - 10))
    shape = report_shape(report)
    received = time.time()
    data, packed = pack_report(report, received, enrolled=False, shape=shape)
    assert unpack_report(data).shape == shape
    assert msgspec.msgpack.decode(data)["shape"] == shape
    # A digest of another length is none this version makes: found again on merging.
    odd = msgspec.msgpack.encode({"format": 1, "report": packed.data, "received_at": received, "enrolled": False,
                                  "shape": shape[:8]})
    assert unpack_report(odd).shape is None


def test_the_signing_agent_travels_with_a_signed_report_only() -> None:
    """Each replica's roster counts a probe as enrolled only while it is the id
    its signing agent reports under: the envelope names that agent."""
    report = decode_report(host_report(7, timestamp=time.time() - 10))
    received = time.time()
    signed, _ = pack_report(report, received, enrolled=True, signer="5837c66d-c569-414f-bf88-a633067fe066")
    assert unpack_report(signed).signer == "5837c66d-c569-414f-bf88-a633067fe066"
    plain, packed = pack_report(report, received, enrolled=False)
    assert unpack_report(plain).signer is None and "signer" not in msgspec.msgpack.decode(plain)
    # Named on an unsigned report, or longer than any agent id: no signer.
    for enrolled, signer in ((False, "someone"), (True, "x" * 129)):
        odd = msgspec.msgpack.encode({"format": 2, "report": packed.data, "received_at": received,
                                      "enrolled": enrolled, "signer": signer})
        assert unpack_report(odd).signer is None


def test_the_tenants_scope_travels_with_a_signed_report_only() -> None:
    """Every replica names a signed report's nodes with the scope the replica
    that received it found (its signer's tenant): the envelope carries it."""
    report = decode_report(host_report(7, timestamp=time.time() - 10))
    received = time.time()
    scope = node_scope("acme")
    signed, packed = pack_report(report, received, enrolled=True, signer="a", scope=scope)
    assert unpack_report(signed).scope == scope
    plain, _ = pack_report(report, received, enrolled=False)
    assert unpack_report(plain).scope is None and "scope" not in msgspec.msgpack.decode(plain)
    # On an unsigned report, or no scope this version makes: none (named as an unsigned report's).
    for enrolled, odd_scope in ((False, scope), (True, scope.upper()), (True, scope + "0"), (True, "web-1")):
        odd = msgspec.msgpack.encode({"format": 2, "report": packed.data, "received_at": received,
                                      "enrolled": enrolled, "scope": odd_scope})
        assert unpack_report(odd).scope is None, odd_scope


def _wire_with(path: tuple[str | int, ...], value: object) -> bytes:
    document = encode(decode_report(host_report(5, timestamp=time.time())))
    inner = document
    for key in path[:-1]:
        inner = inner[key]
    inner[path[-1]] = value
    return msgspec.msgpack.encode({"format": 1, "report": zlib.compress(orjson.dumps(document)),
                                   "received_at": time.time(),
                                   "enrolled": False})


@pytest.mark.parametrize(("path", "value"), [
    (("host_info", "cpu_info", "cores"), "8"), (("processes_info", "processes", 0, "pid"), None),
    (("docker_info", "containers", 0, "state"), "flying"), (("timestamp",), "yesterday"), (("agent_id",), 5)])
def test_a_report_of_the_wrong_types_on_the_stream_is_a_bad_envelope(path: tuple[str | int, ...],
                                                                       value: object) -> None:
    with pytest.raises(BadEnvelope):
        unpack_report(_wire_with(path, value))


@pytest.mark.parametrize("report", [b"not packed", ZSTD_MAGIC + b"garbage", zstandard.compress(b"[1, 2]"),
                                    zlib.compress(b"not json")])
def test_a_packed_report_that_is_not_a_report_s_json_is_a_bad_envelope(report: bytes) -> None:
    for format in (1, 2):
        with pytest.raises(BadEnvelope):
            unpack_report(msgspec.msgpack.encode({"format": format, "report": report, "received_at": 1.0,
                                                  "enrolled": False}))


def test_a_report_that_inflates_beyond_the_bound_is_refused_before_it_takes_the_memory() -> None:
    spaces = b" " * (64 * 1024 * 1024)  # 64 MiB of JSON whitespace, packed in at most ~64 KB
    for format, bomb in ((1, zlib.compress(spaces, 9)), (2, zstandard.compress(spaces, 19))):
        with pytest.raises(BadEnvelope, match="inflates beyond"):
            unpack_report(msgspec.msgpack.encode({"format": format, "report": bomb, "received_at": 1.0,
                                                  "enrolled": False}), max_unpacked=1024 * 1024)


def bomb_declaring(size: int) -> bytes:
    """A Zstandard frame whose header says it unpacks to ``size`` bytes (its data: a few)."""
    packer = zstandard.ZstdCompressor().compressobj(size=size)
    return packer.compress(b" " * 1024) + packer.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)  # a frame not ended


def test_a_frame_declaring_more_than_any_report_is_refused_before_anything_is_unpacked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """700 MiB declared in 22 KB cost every replica ~700 MB before it was
    refused: no replica writes more than ``unpacked_limit`` of its
    ``server.max_body_size`` (88 MiB of the default 10 MiB), and a frame that
    declares more is refused by its header, whatever its data."""
    class NoUnpacking:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("unpacked a frame that declares more than any report")

    bomb = bomb_declaring(700 * 1024**2)
    assert zstandard.frame_content_size(bomb) == 700 * 1024**2
    monkeypatch.setattr(zstandard, "ZstdDecompressor", NoUnpacking)
    with pytest.raises(BadEnvelope, match="inflates beyond"):
        unpack_report(msgspec.msgpack.encode({"format": 2, "report": bomb, "received_at": time.time(),
                                              "enrolled": False}))


@pytest.mark.parametrize("data", [b"{}", b"\xc1", msgspec.msgpack.encode({"format": 2}), msgspec.msgpack.encode([1, 2]),
                                  msgspec.msgpack.encode({"format": 3, "report": zstandard.compress(b"{}"),
                                                          "received_at": 1.0, "enrolled": False}),
                                  msgspec.msgpack.encode({"format": 1, "report": {"agent_id": 5}, "received_at": 1.0,
                                                 "enrolled": False})])
def test_anything_else_on_the_stream_is_a_bad_envelope(data: bytes) -> None:
    with pytest.raises(BadEnvelope):
        unpack_report(data)


def test_agent_ids_that_are_no_subject_tokens_get_subjects_of_their_own() -> None:
    subjects = {agent_subject("s", agent) for agent in ("a.b", "a*", "a b", "a>", "a", "a.b ")}
    assert len(subjects) == 6
    assert all(s.count(".") == 1 and not set(s) & set("*> ") for s in subjects)


async def test_the_asyncio_thread_answers_and_a_cancelled_trio_task_cancels_its_coroutine() -> None:
    thread = AsyncioThread()
    thread.start()
    cancelled = trio.Event()
    token = trio.lowlevel.current_trio_token()
    try:
        async def double(x: int) -> int:
            await asyncio.sleep(0)
            return 2 * x

        assert await thread.run(lambda: double(21)) == 42

        began = trio.Event()

        async def forever() -> None:
            token.run_sync_soon(began.set)
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                token.run_sync_soon(cancelled.set)
                raise

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(thread.run, forever)
                await began.wait()  # under way in the loop, then its Trio task is cancelled
                nursery.cancel_scope.cancel()
            await cancelled.wait()

        async def fail() -> None:
            raise ValueError("from asyncio")

        with pytest.raises(ValueError, match="from asyncio"):
            await thread.run(fail)
    finally:
        thread.stop()


def test_the_client_s_address_travels_with_the_report() -> None:
    """Each replica's roster shares the agents' places between client addresses."""
    report = decode_report(host_report(7, timestamp=time.time() - 10))
    data, _ = pack_report(report, time.time(), enrolled=False, address="203.0.113.9")
    assert unpack_report(data).address == "203.0.113.9"
    data, _ = pack_report(report, time.time(), enrolled=False)
    assert unpack_report(data).address is None and "address" not in msgspec.msgpack.decode(data)
