"""JWT verification and minting (HS256, PyJWT).

Tokens: ``sub`` = user id (required), ``exp`` (required, a number), optional
``name``, ``avatarUrl``, ``role`` (``user`` | ``agent`` | ``admin``, default
``user``), ``iss``/``aud`` checked when configured. ``alg: none``, a wrong
signature, a missing ``sub`` and an expired token are refused with
``INVALID_TOKEN`` or ``TOKEN_EXPIRED``. Tokens are never logged.

:meth:`JwtAuthority.verify_token` also returns the token's ``exp`` (in ms):
WebSocket connections live only until then unless refreshed in-band
(:class:`sync.session.TokenLifetime`). The same checks serve the first frame,
``auth_refresh``, the Yjs ``?token=`` and the HTTP Bearer header.

A verified token is remembered (up to :data:`VERIFIED_TOKENS` of them, the oldest
forgotten first) until its ``exp``: a client reconnecting, or calling the REST API
with the same Bearer token, is not verified again (PyJWT prepares the key on every
call; with it gone, 2,000 REST opens left fewer allocator arenas behind).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, get_args

import jwt

from tripsage_sync.sync.channels import Principal, Role
from tripsage_sync.sync.errors import AuthError

__all__ = ["ALGORITHM", "JwtAuthority", "VerifiedToken", "new_secret"]

logger = logging.getLogger(__name__)

ALGORITHM: Final = "HS256"
MAX_SUB_CHARS: Final = 128
ROLES: Final = frozenset(get_args(Role))
# An exp past 9999-12-31 (it would not print as a timestamp) counts as that moment.
MAX_EXPIRES_AT_MS: Final = 253_402_300_799_999
# Verified tokens remembered until their exp: a few, the latest (each one kept is a few
# small objects that outlive their connection and keep allocator arenas from going back).
VERIFIED_TOKENS: Final = 16


def new_secret() -> str:
    return secrets.token_urlsafe(48)


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    principal: Principal
    expires_at_ms: int  # the token's exp


class JwtAuthority:
    def __init__(
        self,
        secret: str,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        now_s: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self._now_s = now_s
        self._verified: dict[str, VerifiedToken] = {}  # oldest first

    def __repr__(self) -> str:  # never show the secret
        return f"JwtAuthority(issuer={self.issuer!r}, audience={self.audience!r})"

    def verify(self, token: str) -> Principal:
        return self.verify_token(token).principal

    def verify_token(self, token: str) -> VerifiedToken:
        """The identity and expiry of a valid token; raises :class:`AuthError`."""
        known = self._verified.get(token)
        if known is not None:
            if self._now_s() * 1000 < known.expires_at_ms:
                return known
            del self._verified[token]
            raise AuthError("Token expired", code="TOKEN_EXPIRED")
        verified = self._decode(token)
        if len(self._verified) >= VERIFIED_TOKENS:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = verified
        return verified

    def _decode(self, token: str) -> VerifiedToken:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self.audience is not None,
                    "verify_iss": self.issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("Token expired", code="TOKEN_EXPIRED") from exc
        except jwt.InvalidTokenError as exc:
            logger.info("token refused: %s", type(exc).__name__)
            raise AuthError("Invalid token", code="INVALID_TOKEN") from exc
        # PyJWT accepts a numeric-string exp; we do not.
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise AuthError("Invalid token", code="INVALID_TOKEN")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not 0 < len(sub) <= MAX_SUB_CHARS:
            raise AuthError("Invalid token", code="INVALID_TOKEN")
        role = claims.get("role", "user")
        if role not in ROLES:
            raise AuthError("Invalid token", code="INVALID_TOKEN")
        name = claims.get("name")
        avatar = claims.get("avatarUrl")
        principal = Principal(
            user_id=sub,
            name=name if isinstance(name, str) else None,
            avatar_url=avatar if isinstance(avatar, str) else None,
            role=role,
        )
        return VerifiedToken(principal, min(int(exp * 1000), MAX_EXPIRES_AT_MS))

    def mint(
        self,
        user_id: str,
        *,
        now_s: float,
        ttl_s: float = 3600,
        name: str | None = None,
        role: str = "user",
        avatar_url: str | None = None,
    ) -> str:
        if role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}")
        claims: dict[str, Any] = {"sub": user_id, "exp": int(now_s + ttl_s), "iat": int(now_s)}
        if role != "user":
            claims["role"] = role
        if name:
            claims["name"] = name
        if avatar_url:
            claims["avatarUrl"] = avatar_url
        if self.issuer:
            claims["iss"] = self.issuer
        if self.audience:
            claims["aud"] = self.audience
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)
