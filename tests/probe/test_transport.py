"""The probe's publisher pieces: backoff and the outbox of unsent reports."""

from __future__ import annotations

import random

from trioscope_probe._transport import Backoff, Outbox


def test_backoff_grows_exponentially_within_a_cap_and_resets() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(7))
    ceilings = [1, 2, 4, 8, 8, 8]
    waits = [backoff.next() for _ in ceilings]
    assert all(0.2 <= w <= max(0.2, c) for w, c in zip(waits, ceilings, strict=True))
    backoff.reset()
    assert backoff.attempts == 0 and backoff.next() <= 1.0


def test_backoff_is_jittered() -> None:
    waits = {Backoff(base=1.0, cap=60.0, attempts=5, rng=random.Random(seed)).next() for seed in range(20)}
    assert len(waits) > 10


def test_outbox_drops_the_oldest_and_counts_them() -> None:
    outbox = Outbox(limit=3)
    for n in range(5):
        outbox.add(bytes([n]))
    assert list(outbox.reports) == [b"\x02", b"\x03", b"\x04"] and outbox.dropped == 2
