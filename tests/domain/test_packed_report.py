"""An agent's newest report as it is kept and carried: packed with Zstandard,
and zlib-packed data of earlier versions read alike."""

from __future__ import annotations

import zlib

import orjson
import pytest
import zstandard

from tests.synthetic import host_report
from trioscope.domain.agents import ZSTD_MAGIC, BadPack, PackedReport


def _json() -> bytes:
    return orjson.dumps(host_report(3, timestamp=1_760_000_000.0))


def test_a_report_packs_with_zstandard_smaller_than_zlib_and_unpacks_to_its_bytes() -> None:
    raw = _json()
    packed = PackedReport.pack(raw)
    assert packed.data.startswith(ZSTD_MAGIC)
    assert packed.unpack() == raw and packed.unpack(limit=len(raw)) == raw
    assert len(packed.data) < len(zlib.compress(raw, 1))


def test_data_packed_with_zlib_by_an_earlier_version_unpacks_alike() -> None:
    raw = _json()
    assert PackedReport(zlib.compress(raw, 1)).unpack() == raw
    assert PackedReport(zlib.compress(raw, 1)).unpack(limit=len(raw)) == raw


@pytest.mark.parametrize("pack", [
    lambda raw: zstandard.ZstdCompressor(level=19).compress(raw),  # its size in the header
    lambda raw: zstandard.ZstdCompressor(write_content_size=False).compress(raw),  # none: found by unpacking
    lambda raw: zlib.compress(raw, 9),
], ids=["zstd", "zstd-without-size", "zlib"])
def test_data_that_unpacks_beyond_the_bound_is_refused(pack) -> None:  # type: ignore[no-untyped-def]  # a lambda
    bomb = PackedReport(pack(b" " * (8 * 1024 * 1024)))
    assert len(bomb.data) < 64 * 1024
    with pytest.raises(BadPack, match="inflates beyond 1048576 bytes"):
        bomb.unpack(limit=1024 * 1024)


@pytest.mark.parametrize("data", [b"", b"not packed", ZSTD_MAGIC + b"garbage", zlib.compress(b"{}")[:-3]])
def test_data_that_is_no_packed_report_is_refused(data: bytes) -> None:
    with pytest.raises(BadPack):
        PackedReport(data).unpack(limit=1024)


def test_a_zlib_stream_cut_short_is_refused_as_truncated_not_returned_in_part() -> None:
    raw = _json()
    with pytest.raises(BadPack, match="truncated"):
        PackedReport(zlib.compress(raw, 1)[:-20]).unpack(limit=len(raw))
