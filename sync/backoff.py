"""Backing off while storage fails: a circuit breaker for trip edits (sans-I/O).

Theory of operation
-------------------
An edit is confirmed only once it is durable, so while storage fails (a full
disk, I/O errors) every edit fails, and retrying at once only repeats the
failure: clients that are told "retry" come straight back, and before this
breaker Yjs peers were closed and reconnected in a storm. :class:`StorageBackoff`
turns the failures into one shared, growing wait. ``api/`` asks it before it
applies an edit (:meth:`~StorageBackoff.admit`) and tells it how every commit
ended (:meth:`~StorageBackoff.failed`, :meth:`~StorageBackoff.succeeded`);
times are arguments, in ms.

Rule 1 (the states; each row is what a call does in that state)::

    state    admit(now)                         failed(now)              succeeded()
    -------  ---------------------------------  -----------------------  -----------
    HEALTHY  admitted                           OPEN, delay = initial    HEALTHY
    OPEN     refused until retry_at; from then  OPEN, unchanged (a       HEALTHY
             admitted once, as the TRIAL        write admitted before
                                                it opened)
    TRIAL    refused while the trial is out;    OPEN, delay doubled      HEALTHY
             after ``delay`` without a report   (at most ``max``)
             the next caller is a new trial

Rule 2: a refusal's ``retryAfter`` is the current delay. It grows with every
failed trial and is never shorter than the wait until the next trial, so a
client that follows it never comes back before storage may be tried again,
and clients refused at different moments come back spread over a window
instead of all at once.

Rule 3: any success ends the episode: storage wrote something, so it works
again. :meth:`~StorageBackoff.succeeded` says whether an episode ended, so the
shell can ask the writers it refused (Yjs peers) for their edits again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

__all__ = [
    "STORAGE_RETRY_INITIAL_MS",
    "STORAGE_RETRY_MAX_MS",
    "BackoffState",
    "StorageBackoff",
]

STORAGE_RETRY_INITIAL_MS: Final = 1_000
STORAGE_RETRY_MAX_MS: Final = 30_000


class BackoffState(StrEnum):
    HEALTHY = "healthy"
    OPEN = "open"
    TRIAL = "trial"


@dataclass
class StorageBackoff:
    """See the module docstring."""

    initial_ms: int = STORAGE_RETRY_INITIAL_MS
    max_ms: int = STORAGE_RETRY_MAX_MS
    state: BackoffState = BackoffState.HEALTHY
    delay_ms: int = 0
    retry_at_ms: int = 0  # OPEN: the first trial; TRIAL: when an unreported trial is forgotten
    failures: int = field(default=0)  # failed commits in this episode

    def __post_init__(self) -> None:
        if not 1 <= self.initial_ms <= self.max_ms:
            raise ValueError("need 1 <= initial_ms <= max_ms")

    @property
    def failing(self) -> bool:
        return self.state is not BackoffState.HEALTHY

    def admit(self, now_ms: int) -> int | None:
        """None: go ahead (maybe as the trial); else the ``retryAfter`` (ms) to refuse with."""
        if self.state is BackoffState.HEALTHY:
            return None
        if now_ms < self.retry_at_ms:
            return self.delay_ms
        self.state = BackoffState.TRIAL
        self.retry_at_ms = now_ms + self.delay_ms
        return None

    def failed(self, now_ms: int) -> int:
        """A commit failed; the ``retryAfter`` (ms) to tell its writer."""
        self.failures += 1
        if self.state is BackoffState.HEALTHY:
            self.delay_ms = self.initial_ms
        elif self.state is BackoffState.TRIAL:
            self.delay_ms = min(self.delay_ms * 2, self.max_ms)
        else:  # OPEN: admitted before the breaker opened; the episode is already counted
            return self.delay_ms
        self.state = BackoffState.OPEN
        self.retry_at_ms = now_ms + self.delay_ms
        return self.delay_ms

    def succeeded(self) -> bool:
        """A commit succeeded; True when this ends a failure episode."""
        ended = self.failing
        self.state, self.delay_ms, self.retry_at_ms, self.failures = (
            BackoffState.HEALTHY,
            0,
            0,
            0,
        )
        return ended
