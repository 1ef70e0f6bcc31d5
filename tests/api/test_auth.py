"""JwtAuthority: verified tokens are remembered only until their exp."""

from __future__ import annotations

import time

import jwt
import pytest

from tripsage_sync.api.transport.auth import VERIFIED_TOKENS, JwtAuthority
from tripsage_sync.sync.errors import AuthError

SECRET = "a-test-secret-of-sufficient-length-for-hs256"


class FakeTime:
    def __init__(self) -> None:
        self.s = time.time()

    def __call__(self) -> float:
        return self.s


def test_a_remembered_token_still_expires_at_its_exp() -> None:
    clock = FakeTime()
    authority = JwtAuthority(SECRET, now_s=clock)
    token = authority.mint("ana", now_s=clock.s, ttl_s=60)
    first = authority.verify_token(token)
    assert authority.verify_token(token) == first
    clock.s += 61  # PyJWT itself would still accept it: only the remembered exp refuses
    with pytest.raises(AuthError) as refused:
        authority.verify_token(token)
    assert refused.value.code == "TOKEN_EXPIRED"


def test_a_remembered_token_does_not_vouch_for_another() -> None:
    authority = JwtAuthority(SECRET)
    token = authority.mint("ana", now_s=time.time())
    authority.verify_token(token)
    header, claims, _ = token.split(".")
    forged = jwt.encode({"sub": "ana", "exp": int(time.time()) + 60}, "another-secret-" * 4)
    for bad in (f"{header}.{claims}.", f"{header}.{claims}.{forged.split('.')[2]}"):
        with pytest.raises(AuthError) as refused:
            authority.verify_token(bad)
        assert refused.value.code == "INVALID_TOKEN"


def test_the_memory_of_tokens_is_bounded() -> None:
    authority = JwtAuthority(SECRET)
    now = time.time()
    tokens = [authority.mint(f"u{i}", now_s=now) for i in range(VERIFIED_TOKENS + 5)]
    for token in tokens:
        authority.verify_token(token)
    assert len(authority._verified) == VERIFIED_TOKENS
    assert authority.verify_token(tokens[0]).principal.user_id == "u0"  # verified anew
