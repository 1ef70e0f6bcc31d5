"""Token buckets for the spec's rate limits ("Rate Limiting").

A bucket holds up to ``limit`` tokens and refills at ``limit / window_s`` per
second, so a client may burst ``limit`` actions and then sustain the average.
Time is an argument (``now_s``, a monotonic clock reading) so the logic is
deterministic under test. A refusal carries the spec's ``limits`` block
(``current``, ``limit``, ``window``, ``reset``) and ``retryAfter``.

:class:`KeyedLimiter` keeps one bucket per key (IP address or user id) and
forgets full buckets, so memory stays bounded by active keys. In a cluster,
what a key spent on the other nodes is charged to its bucket here too
(:meth:`KeyedLimiter.charge`), so a limit holds across the nodes, a second late.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

__all__ = ["Decision", "KeyedLimiter", "TokenBucket"]

PRUNE_EVERY: Final = 1024


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    window_s: float
    current: int
    retry_after_s: float
    reset_in_s: float


@dataclass(slots=True)
class TokenBucket:
    limit: int
    window_s: float = 60.0
    tokens: float = field(init=False)
    updated_s: float | None = field(default=None, init=False)
    refused: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.limit)

    @property
    def rate_per_s(self) -> float:
        return self.limit / self.window_s

    def _refill(self, now_s: float) -> None:
        if self.updated_s is not None and now_s > self.updated_s:
            self.tokens = min(
                float(self.limit), self.tokens + (now_s - self.updated_s) * self.rate_per_s
            )
        if self.updated_s is None or now_s > self.updated_s:
            self.updated_s = now_s

    def full(self, now_s: float) -> bool:
        self._refill(now_s)
        return self.tokens >= self.limit

    def charge(self, now_s: float, cost: float) -> None:
        """Spend ``cost`` tokens spent elsewhere (another node of a cluster), enough or not:
        the bucket may go below empty, down to one window's worth in debt."""
        self._refill(now_s)
        self.tokens = max(self.tokens - cost, -float(self.limit))

    def take(self, now_s: float, cost: float = 1.0) -> Decision:
        """Spend ``cost`` tokens if there are enough; report either way."""
        if self.limit <= 0:  # 0 disables the limit
            return Decision(True, 0, self.window_s, 0, 0.0, 0.0)
        self._refill(now_s)
        if self.tokens >= cost:
            self.tokens -= cost
            self.refused = 0
            allowed = True
            retry_after = 0.0
        else:
            self.refused += 1
            allowed = False
            retry_after = (cost - self.tokens) / self.rate_per_s
        used = self.limit - math.floor(self.tokens)
        reset_in = (self.limit - self.tokens) / self.rate_per_s
        return Decision(
            allowed,
            self.limit,
            self.window_s,
            used + self.refused,
            math.ceil(retry_after * 1000) / 1000,
            reset_in,
        )


@dataclass(slots=True)
class KeyedLimiter:
    limit: int
    window_s: float = 60.0
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _calls: int = 0

    def take(self, key: str, now_s: float) -> Decision:
        if self.limit <= 0:  # 0 disables the limit: no bucket to keep per key
            return Decision(True, 0, self.window_s, 0, 0.0, 0.0)
        self._calls += 1
        if self._calls % PRUNE_EVERY == 0:
            self.prune(now_s)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.limit, self.window_s)
        return bucket.take(now_s)

    def charge(self, key: str, now_s: float, cost: float) -> None:
        """``cost`` tokens of ``key`` spent on another node (cluster mode)."""
        if self.limit <= 0:
            return
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.limit, self.window_s)
        bucket.charge(now_s, cost)

    def prune(self, now_s: float) -> None:
        for key in [key for key, bucket in self.buckets.items() if bucket.full(now_s)]:
            del self.buckets[key]
