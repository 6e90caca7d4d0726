"""Work in steps: driven with a pause between slices (``in_steps``), or at once (``at_once``)."""

from __future__ import annotations

from trioscope.domain.steps import Steps, at_once
from trioscope.runtime import in_steps


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
