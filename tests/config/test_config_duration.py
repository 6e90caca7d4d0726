import math

import pytest

from trioscope.config import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("2h30m15s", 9015.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("1.5h", 5400.0),
        ("0.1s", 0.1),
        (".5m", 30.0),
        ("1d", 86400.0),
        ("2d12h", 216000.0),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("100ns", 1e-7),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text, seconds):
    assert math.isclose(parse_duration(text), seconds, rel_tol=0, abs_tol=1e-12)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (3600.0, "1h0m0s"),
        (300.0, "5m0s"),
        (90.0, "1m30s"),
        (30.0, "30s"),
        (1.5, "1.5s"),
        (0.5, "500ms"),
        (0.0015, "1.5ms"),
        (0.00025, "250µs"),
        (1e-7, "100ns"),
        (0.0, "0s"),
        (5400.0, "1h30m0s"),
        (3600.5, "1h0m0.5s"),
        (9015.0, "2h30m15s"),
        (30 * 86400.0, "720h0m0s"),
        (-90.0, "-1m30s"),
    ],
)
def test_format_duration_like_go(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("90s", "1m30s"), ("1h30m", "1h30m0s"), ("500ms", "500ms"), ("1d", "24h0m0s"), ("2h30m15s", "2h30m15s")],
)
def test_round_trip_through_canonical_form(text, canonical):
    assert format_duration(parse_duration(text)) == canonical
    assert parse_duration(canonical) == parse_duration(text)


@pytest.mark.parametrize("seconds", [0.001, 0.1, 1.5, 59.999, 61.0, 3599.5, 86400.25, 2592000.0])
def test_format_then_parse_is_identity(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


def test_bare_number_suggests_a_unit():
    with pytest.raises(ValueError, match=r'^"3600" has no unit; did you mean 3600s\?$'):
        parse_duration("3600")


@pytest.mark.parametrize("text", ["1x", "5M", "1h 30m", "h", "1e3s", "+5m", "five minutes", "1.2.3s"])
def test_not_a_duration(text):
    with pytest.raises(ValueError, match="is not a duration; use a number with a unit, like 90s, 5m or 1h"):
        parse_duration(text)


def test_empty_and_negative_durations_are_rejected_with_reasons():
    with pytest.raises(ValueError, match='^"" is empty'):
        parse_duration("")
    with pytest.raises(ValueError, match='^"-5m" is negative'):
        parse_duration("-5m")


def test_a_duration_longer_than_any_meant_is_refused_before_its_numbers_are_read():
    with pytest.raises(ValueError, match=r"is too long to be a duration \(5001 characters, at most 64\)"):
        parse_duration("9" * 5000 + "s")
    assert parse_duration("1h30m15.123456789s") == 5415.123456789
