"""A live token's lifetime (README "Authentication", "Token refresh").

A token is valid only until its ``exp``. :class:`TokenLifetime` decides, given
``now_ms``, what is due and when it next looks (:attr:`TokenLifetime.deadline_ms`,
one deadline for the shell's one timer): :data:`TOKEN_WARNING_S` before ``exp``
the intent :class:`WarnExpiring` (the ``auth_expiring`` event, at once for a
token that has less left at connect), at ``exp`` :class:`CloseExpired` (JSON:
``connection_error`` ``TOKEN_EXPIRED`` and close 3000; Yjs: close 4401).
``auth_refresh`` moves ``exp`` to the new token's
when it names the same user with the
same role (:func:`refresh`); anything else is refused and the old ``exp``
keeps running.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.errors import CLOSE_AUTH_FAILED, PermissionDenied
from tripsage_sync.sync.events import (
    AuthExpiringPayload,
    AuthRefreshedPayload,
    ConnectionErrorPayload,
)
from tripsage_sync.sync.wire import ServerEvent, iso_ms, make_event

__all__ = [
    "REFRESH_MARGIN_S",
    "TOKEN_WARNING_S",
    "CloseExpired",
    "TokenLifetime",
    "WarnExpiring",
    "refresh",
]

# ``auth_expiring`` goes out this long before the token's exp (Centrifugo's model).
TOKEN_WARNING_S: Final = 60.0
# ``refreshBefore`` leaves this much of the token's life for the round trip.
REFRESH_MARGIN_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class WarnExpiring:
    """Intent: tell the client its token expires soon (``auth_expiring``)."""

    expires_at_ms: int
    refresh_before_ms: int

    def event(self, now_ms: int) -> ServerEvent[AuthExpiringPayload]:
        payload = AuthExpiringPayload(
            expiresAt=iso_ms(self.expires_at_ms),
            refreshBefore=iso_ms(self.refresh_before_ms),
            expiresIn=round(max(0, self.expires_at_ms - now_ms) / 1000, 3),
        )
        return make_event(payload, now_ms=now_ms)


@dataclass(frozen=True, slots=True)
class CloseExpired:
    """Intent: the token has expired; close the connection (JSON 3000, Yjs 4401)."""

    code: ClassVar[int] = CLOSE_AUTH_FAILED  # the JSON endpoints' close code
    reason: ClassVar[str] = "token expired"

    def event(self, now_ms: int) -> ServerEvent[ConnectionErrorPayload]:
        """The JSON endpoints' ``connection_error`` sent before the close frame."""
        payload = ConnectionErrorPayload(
            errorCode="TOKEN_EXPIRED", message="Token expired", severity="error"
        )
        return make_event(payload, now_ms=now_ms)


@dataclass(slots=True)
class TokenLifetime:
    """When the connection's token expires and whether the client was warned.

    Rule: :meth:`due` returns :class:`CloseExpired` from ``exp`` on, else one
    :class:`WarnExpiring` per token from ``exp - warning_s`` on, else ``None``;
    :attr:`deadline_ms` is when it next returns something.
    """

    expires_at_ms: int
    warning_s: float = TOKEN_WARNING_S
    warned: bool = False

    @property
    def deadline_ms(self) -> int:
        if self.warned:
            return self.expires_at_ms
        return self.expires_at_ms - int(self.warning_s * 1000)

    def expired(self, now_ms: int) -> bool:
        return now_ms >= self.expires_at_ms

    def due(self, now_ms: int) -> WarnExpiring | CloseExpired | None:
        if self.expired(now_ms):
            return CloseExpired()
        if now_ms < self.deadline_ms:
            return None
        self.warned = True
        refresh_before = max(now_ms, self.expires_at_ms - int(REFRESH_MARGIN_S * 1000))
        return WarnExpiring(self.expires_at_ms, refresh_before)

    def renewed(self, expires_at_ms: int) -> None:
        """A fresh token: its own exp, and a warning of its own before it."""
        self.expires_at_ms = expires_at_ms
        self.warned = False


def refresh(
    lifetime: TokenLifetime,
    current: Principal,
    principal: Principal,
    expires_at_ms: int,
    now_ms: int,
) -> ServerEvent[AuthRefreshedPayload]:
    """``auth_refresh`` with a verified token naming ``principal``: ``auth_refreshed``.

    The token must name the connection's user with the connection's role
    (what was authorized at connect, channels included, was decided for
    that role): otherwise :class:`PermissionDenied`, and the old expiry
    keeps running. Name and avatar stay as authenticated until reconnect.
    """
    if principal.user_id != current.user_id:
        raise PermissionDenied(
            "Token belongs to another user", details={"reason": "different user"}
        )
    if principal.role != current.role:
        raise PermissionDenied(
            "Token has another role; reconnect with it",
            details={"reason": "role changed", "role": current.role},
        )
    lifetime.renewed(expires_at_ms)
    payload = AuthRefreshedPayload(expiresAt=iso_ms(expires_at_ms))
    return make_event(payload, now_ms=now_ms)
