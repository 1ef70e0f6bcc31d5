"""The exception tree of the sync core.

Every error a peer can cause is a :class:`SyncError`. It carries the wire
error ``code`` of ``websocket-api.md`` "Error Codes", the ``close_code`` of
"Connection Close Codes" when the connection must end (``None`` when it stays
open), and ``details`` safe to show the peer. Misuse of the core by our own
code is :class:`InvalidState`, an :class:`AssertionError`, never sent::

    SyncError
    ├── AuthError                  AUTH_FAILED / INVALID_TOKEN / TOKEN_EXPIRED  close 3000
    ├── InvalidMessage             INVALID_MESSAGE_FORMAT                       stays open
    ├── MessageTooLarge            MESSAGE_TOO_LARGE                            close 1009
    ├── ChannelNotFound            CHANNEL_NOT_FOUND                            stays open
    ├── PermissionDenied           PERMISSION_DENIED                            stays open
    ├── RateLimited                RATE_LIMITED                                 stays open
    ├── ConnectionLimitExceeded    CONNECTION_LIMIT_EXCEEDED                    close 1008
    ├── NotFound                   NOT_FOUND                                    stays open
    └── ServerError                SERVER_ERROR                                 stays open

    InvalidState (AssertionError)  a bug in our code
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

__all__ = [
    "CLOSE_ABNORMAL",
    "CLOSE_AUTH_FAILED",
    "CLOSE_GOING_AWAY",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_NORMAL",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_RATE_LIMITED",
    "CLOSE_SERVER_ERROR",
    "AuthError",
    "ChannelNotFound",
    "ConnectionLimitExceeded",
    "InvalidMessage",
    "InvalidState",
    "MessageTooLarge",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "SyncError",
]

# websocket-api.md "Connection Close Codes" (RFC 6455 section 7.4 plus 3000/3001).
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_ABNORMAL: Final = 1006
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_MESSAGE_TOO_BIG: Final = 1009
CLOSE_SERVER_ERROR: Final = 1011
CLOSE_AUTH_FAILED: Final = 3000
CLOSE_RATE_LIMITED: Final = 3001


class SyncError(Exception):
    """An error caused by a peer, reported to it in the documented shape."""

    code: ClassVar[str] = "SERVER_ERROR"
    close_code: int | None = None

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
        close_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.retry_after = retry_after
        if close_code is not None:
            self.close_code = close_code


class AuthError(SyncError):
    """Authentication failed; the connection closes with 3000."""

    code: ClassVar[str] = "AUTH_FAILED"
    close_code = CLOSE_AUTH_FAILED

    def __init__(self, message: str, *, code: str = "AUTH_FAILED", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.code = code  # type: ignore[misc]  # AUTH_FAILED, INVALID_TOKEN, TOKEN_EXPIRED


class InvalidMessage(SyncError):
    code: ClassVar[str] = "INVALID_MESSAGE_FORMAT"


class MessageTooLarge(SyncError):
    code: ClassVar[str] = "MESSAGE_TOO_LARGE"
    close_code = CLOSE_MESSAGE_TOO_BIG


class ChannelNotFound(SyncError):
    code: ClassVar[str] = "CHANNEL_NOT_FOUND"


class PermissionDenied(SyncError):
    code: ClassVar[str] = "PERMISSION_DENIED"


class RateLimited(SyncError):
    """Over a rate limit. ``limits`` is the spec's "Rate Limit Headers" block."""

    code: ClassVar[str] = "RATE_LIMITED"

    def __init__(self, message: str, *, limits: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.limits = limits


class ConnectionLimitExceeded(SyncError):
    code: ClassVar[str] = "CONNECTION_LIMIT_EXCEEDED"
    close_code = CLOSE_POLICY_VIOLATION


class NotFound(SyncError):
    code: ClassVar[str] = "NOT_FOUND"


class ServerError(SyncError):
    code: ClassVar[str] = "SERVER_ERROR"


class InvalidState(AssertionError):
    """Our own code used the core in a way its rules forbid (a bug, not a peer)."""
