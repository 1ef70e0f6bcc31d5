"""Unit tests of sync.ratelimit (time is an argument)."""

from __future__ import annotations

import pytest

from tripsage_sync.sync.ratelimit import KeyedLimiter, TokenBucket


def test_bucket_allows_burst_then_refuses_with_retry_after() -> None:
    bucket = TokenBucket(limit=3, window_s=60)
    assert all(bucket.take(0.0).allowed for _ in range(3))
    refused = bucket.take(0.0)
    assert not refused.allowed
    assert refused.retry_after_s == 20.0  # one token every 20 s
    assert refused.current == 4
    assert refused.limit == 3
    assert refused.reset_in_s == 60.0


def test_bucket_refills_at_the_average_rate() -> None:
    bucket = TokenBucket(limit=60, window_s=60)
    for _ in range(60):
        bucket.take(0.0)
    assert not bucket.take(0.5).allowed
    assert bucket.take(1.0).allowed
    assert not bucket.take(1.0).allowed
    assert bucket.take(100.0).allowed
    assert bucket.full(200.0)


def test_zero_limit_disables() -> None:
    bucket = TokenBucket(limit=0)
    assert all(bucket.take(0.0).allowed for _ in range(1000))


def test_keyed_limiter_isolates_keys_and_prunes() -> None:
    limiter = KeyedLimiter(limit=1)
    assert limiter.take("a", 0.0).allowed
    assert not limiter.take("a", 0.0).allowed
    assert limiter.take("b", 0.0).allowed
    limiter.prune(1000.0)
    assert limiter.buckets == {}


def test_a_disabled_limit_keeps_no_bucket_per_key() -> None:
    limiter = KeyedLimiter(limit=0)
    assert all(limiter.take(f"user-{i}", 1.0).allowed for i in range(100))
    assert limiter.buckets == {}


def test_what_other_nodes_spent_is_charged_here_and_refills() -> None:
    limiter = KeyedLimiter(10, window_s=60)
    for _ in range(4):
        assert limiter.take("alice", 0.0).allowed
    limiter.charge("alice", 0.0, 6)  # another node took 6
    refused = limiter.take("alice", 0.0)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(6.0)  # 1 token at 10 per minute
    limiter.charge("bob", 0.0, 25)  # in debt, but at most one window's worth
    assert not limiter.take("bob", 65.0).allowed  # 10 in debt, 10.8 refilled: 0.8
    assert limiter.take("bob", 67.0).allowed
    limiter.charge("carol", 0.0, 3)
    assert KeyedLimiter(0).take("x", 0.0).allowed  # a disabled limit charges nothing
