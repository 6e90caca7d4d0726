"""Values read back from the metric history are the shortest decimals float32
holds (0.1, not 0.10000000149011612), and they are still exactly what float32
stored."""

from __future__ import annotations

import math
import random
import struct
from array import array

import pytest

from trioscope.domain.timeseries import MetricHistory, Point, SeriesGroup, float32_decimal

HOUR = 3600.0


def f32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def shortest(value: float) -> float:
    """The oracle: the fewest significant digits that float32 rounds back to ``value``."""
    for digits in range(1, 10):
        decimal = float(f"{value:.{digits}g}")
        if f32(decimal) == value:
            return decimal
    raise AssertionError(value)


def test_a_value_recorded_as_a_tenth_reads_back_as_a_tenth():
    group = SeriesGroup(HOUR)
    group.record(0.0, {"cpu_percent": 0.1, "memory_mb": 1234.56})
    assert group.latest() == Point(0.0, {"cpu_percent": 0.1, "memory_mb": 1234.56})
    assert group.points(0.0) == [Point(0.0, {"cpu_percent": 0.1, "memory_mb": 1234.56})]
    history = MetricHistory(HOUR)
    history.record_many(15.0, [("host:h", {"cpu_percent": 0.1})])
    assert history.points("host:h", 0.0) == [Point(15.0, {"cpu_percent": 0.1})]
    assert history.latest("host:h") == Point(15.0, {"cpu_percent": 0.1})


def test_values_float32_cannot_hold_read_back_at_its_precision():
    group = SeriesGroup(HOUR)
    group.record(0.0, {"a": 0.123456789, "b": 16777217.0, "c": 1 / 3})
    assert group.latest() == Point(0.0, {"a": 0.12345679, "b": 16777216.0, "c": 0.33333334})


@pytest.mark.parametrize("value", [
    0.1, -0.1, 1 / 3, 25.5, 99.9, 100.0, 1e-30, -2.5e-8, 16777215.0, 123456789.0, 3.4e38, -3.4e38,
    1.17549435e-38, 1e-45, 7e22, 1e23, 9.999999, 8.000001, 0.5, 2.0 ** -20, 1048575.9,
])
def test_the_decimal_is_the_shortest_and_float32_gives_the_value_back(value):
    stored = f32(value)
    assert float32_decimal(stored) == shortest(stored)
    assert f32(float32_decimal(stored)) == stored


def test_zeros_keep_their_sign_and_nan_stays_nan():
    assert math.copysign(1.0, float32_decimal(-0.0)) == -1.0
    assert float32_decimal(0.0) == 0.0
    assert math.isnan(float32_decimal(math.nan))


def test_many_values_of_every_magnitude():
    """Random float32 bit patterns (every exponent, subnormals too) and values
    like those reported (checked on a million bit patterns when written)."""
    rng = random.Random(7)  # noqa: S311 - reproducible test values, not secrets
    patterns = array("f", struct.pack(f"{20_000}I", *(rng.getrandbits(32) for _ in range(20_000))))
    values = [v for v in patterns if math.isfinite(v)]
    values += array("f", [rng.uniform(0, 16_000) for _ in range(10_000)]
                    + [round(rng.uniform(0, 100), 1) for _ in range(5_000)])
    for value in values:
        assert float32_decimal(value) == shortest(value), value
