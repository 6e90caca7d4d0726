"""The bounds of live log follows, driven with plain values and a clock passed in."""

from __future__ import annotations

import pytest

from trioscope.domain.log_follows import FollowEnded, FollowLimitReached, FollowLimits, LogFollows, UnknownFollow

LIMITS = FollowLimits(per_user=2, per_agent=3, lines_per_second=10, max_bytes=1000, max_seconds=60)


def start(follows: LogFollows, command_id: str, *, user: str = "u1", tenant: str = "t", deployment: str = "d1",
          seconds: float = 300, now: float = 0.0) -> None:
    follows.start(command_id=command_id, tenant=tenant, user_id=user, deployment_hash=deployment, container="web",
                  seconds=seconds, now=now)


def test_a_user_past_their_count_is_refused_naming_the_setting():
    follows = LogFollows(LIMITS)
    start(follows, "c1")
    start(follows, "c2")
    with pytest.raises(FollowLimitReached) as refused:
        start(follows, "c3")
    assert refused.value.setting == "commands.follow_max_per_user"
    start(follows, "c3", tenant="other")  # the same name in another tenant is another user
    start(follows, "c4", user="u2", deployment="d2")


def test_an_agent_past_its_count_is_refused_whoever_asks():
    follows = LogFollows(LIMITS)
    for i, user in enumerate(["a", "b", "c"]):
        start(follows, f"c{i}", user=user)
    with pytest.raises(FollowLimitReached) as refused:
        start(follows, "c9", user="d")
    assert refused.value.setting == "commands.follow_max_per_agent"
    start(follows, "c9", user="d", deployment="d2")


def test_a_stopped_follow_frees_its_place_and_says_why_to_late_batches():
    follows = LogFollows(LIMITS)
    start(follows, "c1")
    start(follows, "c2")
    assert follows.stop("c1", "stopped") is not None
    start(follows, "c3")
    with pytest.raises(FollowEnded) as ended:
        follows.admit("c1", "d1", [5], now=1.0)
    assert ended.value.reason == "stopped"
    assert follows.stop("c1", "stopped") is None


def test_lines_past_the_rate_are_dropped_and_the_allowance_refills_with_time():
    follows = LogFollows(LIMITS)
    start(follows, "c1")
    burst = follows.admit("c1", "d1", [1] * 25, now=0.0)
    assert (len(burst.accepted), burst.dropped, burst.ended) == (10, 15, None)
    assert follows.admit("c1", "d1", [1] * 5, now=0.0).dropped == 5
    later = follows.admit("c1", "d1", [1] * 5, now=0.3)  # 3 lines' worth of time
    assert (later.accepted, later.dropped) == ((0, 1, 2), 2)
    assert later.follow.dropped == 22 and later.follow.lines == 13


def test_the_volume_limit_ends_the_follow_at_the_line_that_crosses_it():
    follows = LogFollows(LIMITS)
    start(follows, "c1")
    admission = follows.admit("c1", "d1", [400, 400, 400, 1], now=0.0)
    assert (admission.accepted, admission.ended) == ((0, 1), "volume_limit")
    with pytest.raises(FollowEnded):
        follows.admit("c1", "d1", [1], now=0.1)
    start(follows, "c2")
    start(follows, "c3")  # the ended one no longer counts


def test_the_time_limit_is_the_shorter_of_the_command_timeout_and_the_setting():
    follows = LogFollows(LIMITS)
    start(follows, "short", seconds=5, now=100.0)
    start(follows, "long", seconds=10_000, now=100.0)
    follows.admit("short", "d1", [1], now=104.9)
    with pytest.raises(FollowEnded) as ended:
        follows.admit("short", "d1", [1], now=105.0)
    assert ended.value.reason == "time_limit"
    follows.admit("long", "d1", [1], now=159.0)
    assert [f.command_id for f in follows.expire(160.0)] == ["long"]
    assert follows.open == {}


def test_a_batch_for_another_deployment_or_no_follow_is_unknown():
    follows = LogFollows(LIMITS)
    start(follows, "c1")
    with pytest.raises(UnknownFollow):
        follows.admit("c1", "d2", [1], now=0.0)
    with pytest.raises(UnknownFollow):
        follows.admit("nope", "d1", [1], now=0.0)


def test_expired_follows_free_their_places_when_a_new_one_starts():
    follows = LogFollows(LIMITS)
    start(follows, "c1", now=0.0)
    start(follows, "c2", now=0.0)
    start(follows, "c3", now=61.0)  # c1 and c2 passed max_seconds
    assert set(follows.open) == {"c3"}
