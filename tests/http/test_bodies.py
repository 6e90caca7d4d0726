"""Gzip request bodies: every member, in linear time, within the size limit."""

from __future__ import annotations

import gzip
import random

import pytest

from trioscope.http._bodies import MAX_GZIP_MEMBERS, _gunzip
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
    (gzip.compress(b"y" * 5000), 413),
    (gzip.compress(b"x")[:-3], 400),
    (gzip.compress(b"x") + b"junk", 400),
])
def test_too_large_truncated_or_trailing_garbage(body: bytes, status: int) -> None:
    with pytest.raises(ApiError) as refused:
        _gunzip(body, limit=1000)
    assert refused.value.status == status
