"""Restart intensity and backoff, as pure functions (OTP: more than MaxR restarts
within MaxT seconds makes the supervisor give up)."""

import pytest

from trioscope.runtime import Backoff, intensity_exceeded, record_restart


def test_record_restart_appends_and_forgets_restarts_older_than_the_period():
    history = ()
    for now in (0.0, 10.0, 20.0):
        history = record_restart(history, now, period=30.0)
    assert history == (0.0, 10.0, 20.0)
    assert record_restart(history, 35.0, period=30.0) == (10.0, 20.0, 35.0)
    assert record_restart(history, 100.0, period=30.0) == (100.0,)


def test_intensity_allows_exactly_intensity_restarts_within_the_period():
    history = ()
    for i in range(5):
        history = record_restart(history, float(i), period=30.0)
        assert not intensity_exceeded(history, 5)
    history = record_restart(history, 5.0, period=30.0)
    assert intensity_exceeded(history, 5)


def test_zero_intensity_gives_up_on_the_first_restart():
    assert intensity_exceeded(record_restart((), 0.0, 30.0), 0)


def test_backoff_doubles_per_restart_in_the_window_and_is_capped():
    backoff = Backoff(initial=0.1, maximum=1.0, factor=2.0)
    delays = [backoff.delay(tuple(range(n))) for n in range(1, 7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.delay(tuple(range(10_000))) == 1.0


def test_backoff_counts_attempts_of_a_run_of_failures_as_restarts():
    backoff = Backoff(initial=0.5, maximum=10.0)
    assert [backoff.delay_for(n) for n in range(1, 8)] == pytest.approx([0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0])
    assert [backoff.delay_for(n) for n in (0, 1)] == [0.5, 0.5]  # none yet is the first
    assert backoff.delay_for(10**9) == 10.0
    assert backoff.delay(tuple(range(3))) == backoff.delay_for(3)


def test_backoff_delays_are_the_waits_of_one_run_and_start_again_when_asked_again():
    backoff = Backoff(initial=0.25, maximum=1.0)
    delays = backoff.delays()
    assert [next(delays) for _ in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert next(backoff.delays()) == 0.25


def test_a_backoff_from_its_maximum_is_a_fixed_wait():
    fixed = Backoff(initial=1.0, maximum=1.0)
    assert [fixed.delay_for(n) for n in range(1, 5)] == [1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": -1.0}, "invalid backoff initial delay: -1.0"),
        ({"initial": 2.0, "maximum": 1.0}, "invalid backoff maximum: 1.0"),
        ({"factor": 0.5}, "invalid backoff factor: 0.5"),
    ],
)
def test_backoff_validation_names_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)
