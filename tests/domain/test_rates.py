"""Rate limits (a token bucket per key), Retry-After values, what each key holds at once, the replay window,
and how often something frequent is logged (``Lull``, ``FirstSeen``)."""

from __future__ import annotations

import logging

import pytest

from trioscope.domain.rates import (
    FirstSeen, Holdings, Lull,
    Lulls, Outage, RateLimiter, ReplayWindow, StandingFailure, TokenBuckets, retry_after,
)

T0 = 1_760_000_000.0


# --- RateLimiter ---------------------------------------------------------------------


def test_burst_is_a_tenth_of_the_rate_and_at_least_10() -> None:
    assert RateLimiter(600).burst == 60
    assert RateLimiter(60).burst == 10
    assert RateLimiter(1).burst == 10


def test_burst_is_allowed_then_refused_with_a_positive_wait() -> None:
    limiter = RateLimiter(60)  # one a second, bursts of 10
    assert [limiter.acquire("k", T0) for _ in range(10)] == [0.0] * 10
    wait = limiter.acquire("k", T0)
    assert wait == pytest.approx(1.0)


def test_a_costly_request_takes_its_cost_and_waits_for_all_of_it() -> None:
    limiter = RateLimiter(60, burst=8)  # one token a second, 8 at once
    assert limiter.acquire("k", T0, cost=6) == 0.0
    assert limiter.acquire("k", T0, cost=3) == pytest.approx(1.0)  # 2 left: 1 s for the third
    assert limiter.acquire("k", T0 + 1.0, cost=3) == 0.0
    assert limiter.acquire("other", T0, cost=100) == 0.0  # more than the burst costs the burst: never refused for good
    assert limiter.acquire("other", T0, cost=1) == pytest.approx(1.0)


def test_wait_becomes_zero_after_waiting_that_long() -> None:
    limiter = RateLimiter(30)  # one every 2 s, bursts of 10
    for _ in range(10):
        assert limiter.acquire("k", T0) == 0.0
    wait = limiter.acquire("k", T0)
    assert wait == pytest.approx(2.0)
    assert limiter.acquire("k", T0 + wait / 2) == pytest.approx(wait / 2)  # half way: half the wait left
    assert limiter.acquire("k", T0 + wait) == 0.0
    assert limiter.acquire("k", T0 + wait) > 0  # that token is spent


def test_refused_requests_are_not_counted() -> None:
    limiter = RateLimiter(60)
    for _ in range(10):
        limiter.acquire("k", T0)
    for _ in range(5):
        assert limiter.acquire("k", T0 + 0.5) > 0
    assert limiter.acquire("k", T0 + 1.0) == 0.0


def test_bucket_refills_no_higher_than_the_burst() -> None:
    limiter = RateLimiter(60)
    assert limiter.acquire("k", T0) == 0.0
    later = T0 + 3600  # idle for an hour: full again, but only to 10
    assert [limiter.acquire("k", later) for _ in range(10)] == [0.0] * 10
    assert limiter.acquire("k", later) > 0


def test_keys_are_independent() -> None:
    limiter = RateLimiter(60)
    for _ in range(10):
        limiter.acquire("a", T0)
    assert limiter.acquire("a", T0) > 0
    assert limiter.acquire("b", T0) == 0.0


def test_idle_keys_are_forgotten_once_full_again() -> None:
    limiter = RateLimiter(60)  # a token a second, bursts of 10
    limiter.acquire("idle", T0)  # 9 left
    limiter.acquire("busy", T0 + 0.5)
    assert "idle" in limiter._buckets  # memory is the point here: look at it
    limiter.acquire("busy", T0 + 1)  # "idle" is full again
    assert list(limiter._buckets) == ["busy"]


def test_beyond_max_keys_the_least_recent_key_is_forgotten() -> None:
    limiter = RateLimiter(60, max_keys=2)
    for key in ("a", "b"):
        for _ in range(10):
            limiter.acquire(key, T0)
    limiter.acquire("c", T0)  # a, the least recently used, is dropped with its spent bucket
    assert limiter.acquire("a", T0) == 0.0
    assert limiter.acquire("c", T0) == 0.0
    assert len(limiter._buckets) <= 2


def test_token_buckets_go_into_debt_and_wait_it_off() -> None:
    buckets: TokenBuckets[str] = TokenBuckets(0.25, 2.0)
    assert buckets.left("alice", T0) == 2.0  # a key never drawn from is full
    buckets.draw("alice", 3.0, T0)
    assert buckets.left("alice", T0) == pytest.approx(-1.0)
    assert buckets.left("alice", T0 + 4) == pytest.approx(0.0)
    assert buckets.left("alice", T0 + 3600) == 2.0  # no higher than the burst
    assert "bob" not in buckets


def test_token_buckets_forget_keys_full_again_and_the_least_recent_past_max_keys() -> None:
    buckets: TokenBuckets[str] = TokenBuckets(1.0, 10.0, max_keys=2)
    for key in ("a", "b", "c"):
        buckets.draw(key, 5.0, T0)
    assert list(buckets) == ["b", "c"]  # "a", the least recently drawn, went with its spent bucket
    buckets.draw("b", 0.0, T0 + 1)  # touched: now the most recent
    assert list(buckets) == ["c", "b"]
    buckets.draw("d", 1.0, T0 + 5)  # "c" and "b" are full again
    assert list(buckets) == ["d"] and len(buckets) == 1


# --- retry_after ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "header"),
    [(0.0, "1"), (0.001, "1"), (1.0, "1"), (1.0001, "2"), (2.5, "3"), (59.0, "59"), (-3.0, "1")],
)
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_1(seconds: float, header: str) -> None:
    assert retry_after(seconds) == header


# --- ReplayWindow --------------------------------------------------------------------


def test_second_use_within_the_window_is_refused() -> None:
    window = ReplayWindow(600)
    assert window.first_use("req-1", T0)
    assert not window.first_use("req-1", T0)
    assert not window.first_use("req-1", T0 + 599.9)


def test_id_is_allowed_again_after_the_window() -> None:
    window = ReplayWindow(600)
    assert window.first_use("req-1", T0)
    assert window.first_use("req-1", T0 + 600)
    assert not window.first_use("req-1", T0 + 601)  # and that use starts a new window


def test_refused_use_does_not_extend_the_window() -> None:
    window = ReplayWindow(600)
    window.first_use("req-1", T0)
    assert not window.first_use("req-1", T0 + 500)
    assert window.first_use("req-1", T0 + 600)


def test_different_ids_are_independent() -> None:
    window = ReplayWindow(600)
    assert window.first_use("req-1", T0)
    assert window.first_use("req-2", T0)
    assert not window.first_use("req-1", T0 + 1)
    assert not window.first_use("req-2", T0 + 1)


def test_expiry_of_one_id_keeps_later_ones() -> None:
    window = ReplayWindow(600)
    window.first_use("early", T0)
    window.first_use("late", T0 + 300)
    assert window.first_use("early", T0 + 600)
    assert not window.first_use("late", T0 + 600)


def test_a_full_window_still_refuses_an_id_it_holds() -> None:
    window = ReplayWindow(600.0, max_ids=3)
    for request_id in ("a", "b", "c"):
        assert window.first_use(request_id, 0.0)
    assert not window.first_use("a", 1.0)


def test_a_sources_refusals_beyond_its_budget_are_counted_and_its_next_recorded_one_says_how_many() -> None:
    from trioscope.domain.rates import RefusalSampler

    sampler = RefusalSampler(per_minute=60, total_per_minute=6000)
    admitted = [sampler.admit("a", 0.0) for _ in range(25)]
    assert admitted[:10] == [0] * 10 and admitted[10:] == [None] * 15  # a burst of 10, then one a second
    assert sampler.admit("b", 0.0) == 0  # another source has its own
    assert sampler.admit("a", 1.0) == 15
    assert sampler.admit("a", 1.0) is None
    assert sampler.left_out == 16


def test_a_recorded_refusal_the_store_had_no_room_for_is_counted_with_the_next() -> None:
    from trioscope.domain.rates import RefusalSampler

    sampler = RefusalSampler(per_minute=60, total_per_minute=None)
    [sampler.admit("a", 0.0) for _ in range(12)]  # 10 recorded, 2 left out
    assert sampler.admit("a", 1.0) == 2  # admitted, saying 2 before it; but its record is dropped:
    sampler.not_recorded("a", 1 + 2)
    assert sampler.admit("a", 2.0) == 3  # so the next recorded one says 3
    assert sampler.left_out == 2 + 3


def test_all_sources_together_are_bounded_too() -> None:
    from trioscope.domain.rates import RefusalSampler

    sampler = RefusalSampler(per_minute=600, total_per_minute=120)
    admitted = [sampler.admit(f"10.0.0.{i}", 0.0) for i in range(100)]
    assert sum(a is not None for a in admitted) == 12  # the total's burst (a tenth of 120, at least 10)


def test_holdings_keep_an_entry_only_per_key_that_holds_something() -> None:
    held: Holdings[str] = Holdings()
    held.take("10.0.0.1")
    held.take("10.0.0.1")
    with held.held("10.0.0.2"):
        assert (held.count("10.0.0.1"), held.count("10.0.0.2"), len(held)) == (2, 1, 2)
    held.give_back("10.0.0.1")
    assert (held.count("10.0.0.1"), held.count("10.0.0.2"), len(held)) == (1, 0, 1)
    held.give_back("10.0.0.1")
    assert len(held) == 0  # a client that came and went leaves nothing behind


def test_a_holding_is_given_back_when_its_block_fails() -> None:
    held: Holdings[tuple[str, str]] = Holdings()
    with pytest.raises(RuntimeError), held.held(("acme", "alice")):
        raise RuntimeError("the listing failed")
    assert held.count(("acme", "alice")) == 0 and len(held) == 0


# --- Lull, FirstSeen -----------------------------------------------------------------


def test_a_lull_says_once_then_once_an_interval_how_many_it_left_out() -> None:
    lull = Lull(60.0)
    assert lull.due(0.0) == 0
    assert [lull.due(t) for t in (1.0, 30.0, 59.9)] == [None, None, None]
    assert lull.due(60.0) == 3
    assert lull.due(61.0) is None


def test_a_lull_says_it_at_warning_level_once_an_interval_and_at_debug_level_between() -> None:
    lull = Lull(600.0)
    assert [lull.level(t) for t in (T0, T0 + 1, T0 + 599.9, T0 + 600, T0 + 601)] == [
        logging.WARNING, logging.DEBUG, logging.DEBUG, logging.WARNING, logging.DEBUG]


def test_a_lull_counts_the_times_said_quietly_as_not_said() -> None:
    lull = Lull(60.0)
    lull.level(T0)
    lull.level(T0 + 1)
    assert lull.due(T0 + 60) == 1


def test_first_seen_is_true_once_per_key() -> None:
    seen: FirstSeen[tuple[str, int]] = FirstSeen(64)
    assert seen.first(("KeyError", 1))
    assert not seen.first(("KeyError", 1))
    assert seen.first(("KeyError", 2))
    assert len(seen) == 2


def test_first_seen_past_its_capacity_takes_every_key_as_seen() -> None:
    seen: FirstSeen[str] = FirstSeen(2)
    assert [seen.first(key) for key in ("a", "b", "c", "a")] == [True, True, False, False]
    assert len(seen) == 2  # memory stays bounded whoever sends what


def test_an_outage_says_each_kind_of_failure_as_it_begins_and_again_after_it_ended() -> None:
    outage = Outage()
    assert outage.first("unreachable")  # the connection's own callback: the first word
    assert not outage.changed("unreachable") and not outage.first("unreachable")  # the retries: nothing more
    assert outage.changed("no_jetstream")  # reached, but another failure: said
    assert not outage.first("unreachable")  # a first word only: something was said of this outage
    assert outage.changed("unreachable") and not outage.changed("unreachable")
    outage.over()  # connected
    assert outage.said is None
    assert outage.changed("unreachable")  # the next outage is said again


def test_lulls_say_each_key_once_an_interval_and_forget_the_oldest() -> None:
    lulls: Lulls[str] = Lulls(60.0, capacity=2)
    assert [lulls.due("a", t) for t in (0, 1, 2)] == [0, None, None]
    assert lulls.due("b", 3) == 0  # another cause is said at once
    assert lulls.due("a", 61) == 2  # the two not said since
    assert lulls.due("c", 62) == 0  # "b", said longest ago, forgotten
    assert lulls.due("b", 63) == 0


def test_a_standing_failure_is_checked_an_interval_after_it_began_then_once_an_interval() -> None:
    failing = StandingFailure(5.0)
    assert failing.reason is None and not failing.check_due(100.0)  # nothing stands: nothing to check
    failing.failed("lock timeout", 100.0)
    assert not failing.check_due(101.0)  # a use just failed: looking at once would find the same
    failing.failed("lock timeout again", 104.0)  # more failing uses do not put the check off
    assert failing.reason == "lock timeout again"
    assert failing.check_due(105.0)
    assert not failing.check_due(105.0) and not failing.check_due(109.9)  # many askers, one check an interval
    failing.failed("still locked", 106.0)  # the check failed: it stands
    assert failing.check_due(110.0)
    failing.over()  # the check worked
    assert failing.reason is None and not failing.check_due(200.0)
    failing.failed("refused", 300.0)  # the next failure waits its interval again
    assert not failing.check_due(304.0) and failing.check_due(305.0)
