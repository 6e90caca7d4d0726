"""Leases of rate-limit tokens a process takes from a shared bucket
(``_token_leases``), driven with plain values: a fake bucket, a clock passed in."""

from __future__ import annotations

import pytest

from trioscope.store._token_leases import SHARE, TokenLeases

T0 = 1000.0


class Bucket:
    """The shared bucket as ``_shared_limits``' statement keeps it: all or none."""

    def __init__(self, burst: float, rate: float) -> None:
        self.tokens, self.rate, self.burst, self.at = burst, rate, burst, T0
        self.asked = 0

    def lease(self, want: int, now: float) -> tuple[bool, float]:
        self.asked += 1
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= want:
            self.tokens -= want
            return True, self.tokens
        return False, self.tokens


def acquire(leases: TokenLeases, bucket: Bucket, key: str, now: float) -> float:
    """What ``SharedRateBudget.acquire`` does, without the database."""
    while True:
        answer = leases.take(key, now)
        if answer is not None:
            return answer
        want = leases.want(key, now)
        granted, left = bucket.lease(want, now)
        if granted:
            leases.leased(key, want, left, now)
            continue
        wait = leases.refused(key, want, left, now)
        if wait is not None:
            return wait


def leases(burst: float = 600.0, rate: float = 10.0, lifetime: float = 1.0, max_size: int = 16) -> TokenLeases:
    return TokenLeases(rate=rate, burst=burst, lifetime=lifetime, max_size=max_size)


def test_a_key_first_asks_for_one_token_then_doubles_while_it_uses_its_leases_up() -> None:
    mine, bucket = leases(), Bucket(600, 10)
    wants = []
    for _ in range(40):
        wants.append(mine.want("k", T0))
        assert acquire(mine, bucket, "k", T0) == 0.0
    assert wants[:1] == [1]
    assert sorted(set(wants)) == [1, 2, 4, 8, 16]  # up to max_size, no further
    assert bucket.asked == 6  # 1 + 2 + 4 + 8 + 16 = 31 tokens, then 16 more for the last 9 requests
    assert bucket.tokens == 600 - 47


def test_tokens_not_handed_out_within_their_lifetime_are_dropped_and_the_next_lease_halved() -> None:
    mine, bucket = leases(lifetime=1.0), Bucket(600, 10)
    for _ in range(1 + 2 + 4):
        acquire(mine, bucket, "k", T0)
    acquire(mine, bucket, "k", T0)  # a lease of 8: 7 left
    assert mine.want("k", T0) == 8
    assert acquire(mine, bucket, "k", T0 + 1.0) == 0.0  # expired: dropped, a new lease asked for
    assert bucket.asked == 5
    assert mine.want("k", T0 + 1.0) == 4


def test_a_lease_takes_at_most_a_share_of_what_the_bucket_last_had() -> None:
    mine, bucket = leases(burst=40, rate=0.1), Bucket(40, 0.1)
    for _ in range(1 + 2 + 4):
        acquire(mine, bucket, "k", T0)
    # 33 left: the next lease would be 8, a share is floor(33 / 4) = 8; then 25 left, a share 6
    acquire(mine, bucket, "k", T0)
    for _ in range(7):
        acquire(mine, bucket, "k", T0)
    assert bucket.tokens == 25
    assert mine.want("k", T0) == int(25 * SHARE)


def test_tokens_handed_out_by_several_processes_never_exceed_the_bucket() -> None:
    bucket = Bucket(10, 0.1)
    processes = [leases(burst=10, rate=0.1), leases(burst=10, rate=0.1)]
    answers = [acquire(processes[n % 2], bucket, "k", T0) for n in range(40)]
    # Alternately to each, as a load balancer sends them: the whole burst goes
    # through first (neither process sits on tokens the other needed), then nothing.
    assert answers[:10] == [0.0] * 10
    assert all(wait > 0 for wait in answers[10:])


def test_a_refusal_is_answered_here_until_the_bucket_has_a_token_again() -> None:
    mine, bucket = leases(burst=10, rate=0.5), Bucket(10, 0.5)
    for _ in range(10):
        assert acquire(mine, bucket, "k", T0) == 0.0
    asked = bucket.asked
    wait = acquire(mine, bucket, "k", T0)
    assert wait == pytest.approx(2.0)
    assert acquire(mine, bucket, "k", T0 + 1.0) == pytest.approx(1.0)  # not asked again: nobody adds tokens
    assert bucket.asked == asked + 1
    assert acquire(mine, bucket, "k", T0 + 2.0) == 0.0
    assert bucket.asked == asked + 2


def test_fewer_tokens_than_wanted_asks_again_for_one() -> None:
    mine = leases(burst=10, rate=0.1)
    mine.leased("k", 4, 9.0, T0)  # thinks the bucket has 9: a share is 2
    for _ in range(4):
        mine.take("k", T0)
    assert mine.want("k", T0) == 2
    assert mine.refused("k", 2, 1.5, T0) is None  # another process took the rest: one is left
    assert mine.want("k", T0) == 1


def test_forgetting_a_key_drops_its_tokens_never_hands_them_out_twice() -> None:
    mine = TokenLeases(rate=10, burst=600, lifetime=1.0, max_size=16, max_keys=2)
    mine.leased("a", 3, 500, T0)
    mine.leased("b", 3, 500, T0)
    mine.leased("c", 3, 500, T0)  # "a" is the least recently used: forgotten
    assert mine.take("a", T0) is None
    assert [mine.take("c", T0) for _ in range(4)] == [0.0, 0.0, 0.0, None]


@pytest.mark.parametrize("shape", [{"rate": 0}, {"burst": 0.5}, {"lifetime": 0}, {"max_size": 0},
                                   {"max_keys": 0}])
def test_a_shape_that_cannot_work_is_refused(shape: dict[str, float]) -> None:
    args = {"rate": 1.0, "burst": 10.0, "lifetime": 1.0, "max_size": 4, "max_keys": 10, **shape}
    with pytest.raises(ValueError, match="invalid lease shape"):
        TokenLeases(**args)  # type: ignore[arg-type]  # floats for ints on purpose: the shape is validated
