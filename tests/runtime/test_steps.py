"""Work in steps: driven with a pause between slices (``in_steps``), or at once (``at_once``);
the pause after so long without one (``Slicer``)."""

from __future__ import annotations

import pytest
from trio.testing import assert_checkpoints, assert_no_checkpoints

from trioscope.domain.steps import Steps, at_once
from trioscope.runtime import Slicer, in_steps


def _counting(slices: int, log: list[str]) -> Steps[int]:
    for index in range(slices):
        log.append(f"slice {index}")
        if index < slices - 1:
            yield
    return slices * 10


async def test_in_steps_pauses_between_the_slices_and_returns_the_result() -> None:
    log: list[str] = []

    async def pause() -> None:
        log.append("pause")

    assert await in_steps(_counting(3, log), pause) == 30
    assert log == ["slice 0", "pause", "slice 1", "pause", "slice 2"]


async def test_in_steps_pauses_with_a_checkpoint_by_default() -> None:
    assert await in_steps(_counting(2, [])) == 20


def test_at_once_runs_every_slice_without_pausing() -> None:
    log: list[str] = []
    assert at_once(_counting(4, log)) == 40
    assert log == [f"slice {index}" for index in range(4)]


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_slicer_is_due_once_more_than_its_time_passed_since_it_was_made_or_restarted() -> None:
    clock = Clock()
    slicer = Slicer(0.02, clock)
    clock.now += 0.02
    assert not slicer.due()
    clock.now += 0.001
    assert slicer.due()
    slicer.restart()
    assert not slicer.due()
    clock.now += 0.05
    assert slicer.due()


async def test_a_slicer_pauses_only_when_due_and_counts_from_the_pause() -> None:
    clock = Clock()
    slicer = Slicer(0.02, clock)
    clock.now += 0.01
    with assert_no_checkpoints():
        await slicer.pause()
    clock.now += 0.015
    with assert_checkpoints():
        await slicer.pause()
    assert not slicer.due()
    clock.now += 0.015
    with assert_no_checkpoints():
        await slicer.pause()


async def test_a_slicers_pause_drives_in_steps() -> None:
    clock = Clock()
    slicer = Slicer(0.02, clock)
    log: list[str] = []

    def slow(slices: int) -> Steps[int]:
        for index in range(slices):
            clock.now += 0.015
            log.append(f"slice {index} {'due' if slicer.due() else 'not due'}")
            yield
        return slices

    assert await in_steps(slow(4), slicer.pause) == 4
    assert log == ["slice 0 not due", "slice 1 due", "slice 2 not due", "slice 3 due"]


@pytest.mark.parametrize("after", [-0.01, float("inf"), float("nan")])
def test_a_slicer_refuses_a_bad_time(after: float) -> None:
    with pytest.raises(ValueError, match="invalid after"):
        Slicer(after)
