"""Request bodies: gzip (every member, in linear time, within the size limit),
JSON integers orjson would not keep exact, and large bodies worked on off the event loop."""

from __future__ import annotations

import gzip
import random
import re
import threading

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trioscope.http._bodies import (
    MAX_GZIP_MEMBERS, OFF_LOOP_BYTES, _gunzip, _may_hold_long_integer, off_loop, parse_json,
)
from trioscope.http._errors import ApiError


def test_members_that_cross_the_input_slices_all_come_out() -> None:
    rng = random.Random(7)
    parts = [rng.randbytes(rng.randrange(1, 90_000)) for _ in range(12)]  # incompressible: members as large
    body = b"".join(gzip.compress(part) for part in parts) + b"\0" * 100
    assert _gunzip(body, limit=10**7) == b"".join(parts)


def test_at_most_max_members() -> None:
    assert _gunzip(gzip.compress(b"x") * MAX_GZIP_MEMBERS, limit=1000) == b"x" * MAX_GZIP_MEMBERS
    with pytest.raises(ApiError) as refused:
        _gunzip(gzip.compress(b"") * 200_000, limit=1000)  # once quadratic: ~3 minutes per 10 MB
    assert refused.value.status == 400 and str(MAX_GZIP_MEMBERS) in refused.value.message


@pytest.mark.parametrize(("body", "status"), [
    (gzip.compress(b"y" * 5000, mtime=0), 413),
    (gzip.compress(b"x", mtime=0)[:-3], 400),
    (gzip.compress(b"x", mtime=0) + b"junk", 400),
])
def test_too_large_truncated_or_trailing_garbage(body: bytes, status: int) -> None:
    with pytest.raises(ApiError) as refused:
        _gunzip(body, limit=1000)
    assert refused.value.status == status


_LONG_NUMBER = re.compile(rb"(?:^|[:,\[ \t\r\n])(?:-9\d{18}|-?\d{20})")
"""What the pre-check must find, as a regular expression: a long run of
digits where a value may begin."""


@given(st.lists(st.sampled_from([b"0", b"9", b"5", b"-", b"-9", b"1" * 18, b"9" * 19, b" ", b"\"", b".", b"e",
                                 b":", b",", b"[", b"\n", b"a", b"f"]),
                max_size=40).map(b"".join))
def test_long_integer_precheck_finds_what_the_pattern_finds(body: bytes) -> None:
    assert _may_hold_long_integer(body) == bool(_LONG_NUMBER.search(body))


@pytest.mark.parametrize("literal", [b"18446744073709551616", b"-9223372036854775809", b"99999999999999999999999"])
def test_integer_beyond_what_orjson_keeps_exact_is_refused_naming_the_field(literal: bytes) -> None:
    with pytest.raises(ApiError) as refused:
        parse_json(b'{"a": [1, {"b": ' + literal + b'}], "c": "12345678901234567890123"}')
    assert refused.value.status == 400 and refused.value.message.startswith("$.a[1].b:")


def test_long_digit_runs_inside_strings_need_no_second_look() -> None:
    container_id = b"60df257c2c69af3d445208bad5009f564494036050347489092445be84b6"  # 20 digits in a row
    assert not _may_hold_long_integer(b'{"id": "' + container_id + b'", "n": 0.12345678901234567890e3}')
    assert _may_hold_long_integer(b'{"id": "' + container_id + b'", "n":-99999999999999999999}')
    assert _may_hold_long_integer(b"[1,\t-9223372036854775809]") and _may_hold_long_integer(b"18446744073709551616")


def test_integers_within_range_and_digits_in_strings_pass() -> None:
    body = b'{"a": 18446744073709551615, "b": -9223372036854775808, "c": "-99999999999999999999999"}'
    assert parse_json(body) == {"a": 2**64 - 1, "b": -(2**63), "c": "-99999999999999999999999"}


async def test_a_large_body_is_worked_on_in_a_worker_thread_a_small_one_here() -> None:
    here = threading.get_ident()
    limiter = trio.CapacityLimiter(1)

    def where(_body: bytes) -> int:
        return threading.get_ident()

    assert await off_loop(b"x" * OFF_LOOP_BYTES, where, limiter=limiter) == here
    assert await off_loop(b"x" * (OFF_LOOP_BYTES + 1), where, limiter=limiter) != here
    with pytest.raises(ApiError, match="not valid JSON"):  # what it raises there is raised here
        await off_loop(b"[" * (OFF_LOOP_BYTES + 1), parse_json, limiter=limiter)
