"""What a test run killed before its tests ended leaves on the machine's shared
services (PostgreSQL schemas, NATS streams), and when the next run clears it.

A test removes what it made when it ends; a run killed first cannot. Each
thing a test makes there carries when it was made, and the first use of a
service in a test process clears what is older than ``LEFT_AFTER``.
"""

from __future__ import annotations

import time

LEFT_AFTER = 3600.0
"""Seconds after which a test's schema or stream is taken to be left by a run
that was killed: one test's lives seconds, a module's minutes."""


def left_behind(made_at: float, older_than: float = LEFT_AFTER, now: float | None = None) -> bool:
    """Whether something made at ``made_at`` (seconds since the epoch) is older than ``older_than``."""
    return (time.time() if now is None else now) - made_at > older_than
