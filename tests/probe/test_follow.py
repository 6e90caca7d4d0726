"""How the probe turns the engine's log lines into the server's log entries."""

from __future__ import annotations

from trioscope_probe._follow import MAX_LINE, SeenLines, _entry, _stamp_key


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
    assert len(entry["message"]) == MAX_LINE and entry["message"].endswith("…")
    assert _entry("stdout", b"2026-12-02T11:13:21Z caf\xe9")["message"] == "caf\ufffd"


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
