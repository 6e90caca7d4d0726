"""The server's wall clock against its monotonic one (``domain.wall_clock``)."""

from __future__ import annotations

from trioscope.domain.wall_clock import STEP, WallSteps

T0 = 1_800_000_000.0


def test_a_step_is_read_once_with_its_sign_and_drift_within_the_tolerance_is_none() -> None:
    steps = WallSteps()
    assert steps.step(T0, 100.0) == 0.0  # the first reading
    assert steps.step(T0 + 10.0 + STEP / 2, 110.0) == 0.0  # drift, or two readings apart
    assert steps.step(T0 + 620.0, 120.0) == 600.0  # set forward by 10 minutes
    assert steps.step(T0 + 630.0, 130.0) == 0.0  # once
    assert steps.step(T0 - 7060.0, 140.0) == -7700.0  # set back


def test_the_offset_is_kept_within_the_tolerance_and_taken_anew_after_a_step() -> None:
    steps = WallSteps()
    assert steps.offset(T0, 100.0) == T0 - 100.0
    assert steps.offset(T0 + 10.0 + STEP / 2, 110.0) == T0 - 100.0  # reports received together order as they came
    assert steps.offset(T0 + 620.0, 120.0) == T0 + 500.0
