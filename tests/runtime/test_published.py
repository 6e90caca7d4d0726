"""Published: readers see the newest value whole; the old one is untouched."""

from trioscope.runtime import Published


def test_publish_replaces_the_value_and_counts_versions() -> None:
    first = {"a": 1}
    board = Published(first)
    assert board.value is first and board.version == 0
    second = {**first, "b": 2}
    board.publish(second)
    assert board.value is second and board.version == 1
    assert first == {"a": 1}  # a reader holding the old value still has it as it was
