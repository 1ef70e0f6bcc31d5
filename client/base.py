"""The client's constants (the spec's reconnection defaults), errors and time stamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL_S",
    "HIGH_FREQUENCY_PER_S",
    "LATENCY_SAMPLES",
    "MAX_RECONNECT_ATTEMPTS",
    "MAX_RECONNECT_DELAY_S",
    "NO_RECONNECT_CLOSE_CODES",
    "OPEN_TIMEOUT_S",
    "OUTCOME_TYPES",
    "RECONNECT_DELAY_S",
    "AuthenticationFailed",
    "RequestRefused",
    "iso_ms",
]


def iso_ms(now_ms: int) -> str:
    """``2025-05-28T01:30:00.000Z`` for a Unix time in milliseconds (the wire's stamps)."""
    seconds, millis = divmod(now_ms, 1000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis:03d}Z"


MAX_RECONNECT_ATTEMPTS: Final = 5

RECONNECT_DELAY_S: Final = 1.0

MAX_RECONNECT_DELAY_S: Final = 30.0

OPEN_TIMEOUT_S: Final = 10.0

DEFAULT_HEARTBEAT_INTERVAL_S: Final = 25.0

LATENCY_SAMPLES: Final = 100

# "isHighFrequency" in "Client Metrics": more messages per second than this.
HIGH_FREQUENCY_PER_S: Final = 10.0

# "Connection Close Codes" whose Reconnect column says No.
NO_RECONNECT_CLOSE_CODES: Final = frozenset({1000, 1008, 3000})

OUTCOME_TYPES: Final = (
    "optimistic_update_confirmed",
    "optimistic_update_rejected",
    "optimistic_update_rollback",
)


class AuthenticationFailed(Exception):
    """The server refused the token (the "Authentication Response" error)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class RequestRefused(Exception):
    """The server answered a join or sync request with an ``error`` event."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(f"{payload.get('code')}: {payload.get('message')}")
        self.code = str(payload.get("code"))
        self.payload = payload
