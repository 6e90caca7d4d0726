"""The API's two ways of writing a unix time (`wire.rfc3339_seconds`, `wire.rfc3339_millis`)."""

from __future__ import annotations

import math

import pytest

from trioscope.wire import rfc3339_millis, rfc3339_seconds


def test_seconds_are_written_in_utc_and_truncated() -> None:
    assert rfc3339_seconds(1_760_313_600.999) == "2025-10-13T00:00:00Z"
    assert rfc3339_millis(1_760_313_600.9999) == "2025-10-13T00:00:00.999Z"


def test_the_first_year_keeps_four_digits() -> None:
    # glibc's strftime("%Y") writes the year 1 as "1", which is not RFC 3339.
    assert rfc3339_seconds(-62_135_596_800.0) == "0001-01-01T00:00:00Z"


@pytest.mark.parametrize(("seconds", "written"), [
    (1e300, "9999-12-31T23:59:59Z"), (math.inf, "9999-12-31T23:59:59Z"), (math.nan, "9999-12-31T23:59:59Z"),
    (-1e300, "0001-01-01T00:00:00Z"), (-math.inf, "0001-01-01T00:00:00Z"),
])
def test_a_time_it_cannot_write_is_the_nearest_end(seconds: float, written: str) -> None:
    assert rfc3339_seconds(seconds) == written


def test_none_is_none_and_nan_has_no_millisecond_form() -> None:
    assert rfc3339_seconds(None) is None
    assert rfc3339_millis(None) is None
    assert rfc3339_millis(math.nan) is None
    assert rfc3339_millis(1e300) == "9999-12-31T23:59:59.999Z"
