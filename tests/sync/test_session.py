"""Unit tests of the connection state machine."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.errors import InvalidState, PermissionDenied
from tripsage_sync.sync.session import (
    ABUSIVE_REFUSALS,
    TOKEN_WARNING_S,
    CloseExpired,
    Session,
    State,
    TokenLifetime,
    WarnExpiring,
)

HOUR_MS = 3_600_000
WARNING_MS = int(TOKEN_WARNING_S * 1000)


def make() -> Session:
    return Session("c1", "chat", "s1", now_ms=1000, heartbeat_interval_s=25, auth_timeout_s=10)


def test_happy_path_and_illegal_moves() -> None:
    session = make()
    assert session.state is State.AWAITING_AUTH
    with pytest.raises(InvalidState):
        _ = session.user_id
    session.authenticated(Principal("alice"), expires_at_ms=HOUR_MS)
    assert session.is_open
    assert session.user_id == "alice"
    with pytest.raises(InvalidState):  # Rule 1: only once
        session.authenticated(Principal("bob"), expires_at_ms=HOUR_MS)
    assert session.principal == Principal("alice")  # unchanged by the refused move
    assert session.close(1000) is True
    assert session.close(1001) is False
    assert session.close_code == 1000
    session.closed()
    assert session.state.value == State.CLOSED.value
    with pytest.raises(InvalidState):
        session.transition("authenticated")


def test_deadlines_and_heartbeat() -> None:
    session = make()
    assert session.auth_deadline_ms == 11_000
    assert session.idle_deadline_ms == 51_000
    session.frame_received(10, now_ms=5_000)
    assert session.idle_deadline_ms == 55_000
    session.frame_sent(20)
    beat = session.heartbeat(now_ms=26_000)
    assert beat.type == "connection_heartbeat"
    assert beat.payload.metrics.model_dump() == {
        "uptime": 25.0,
        "messagesSent": 1,
        "messagesReceived": 1,
    }
    assert beat.payload.serverTime == "1970-01-01T00:00:26.000Z"


def test_abuse_counter() -> None:
    session = make()
    assert not any(session.refused() for _ in range(ABUSIVE_REFUSALS - 1))
    session.allowed()
    assert not any(session.refused() for _ in range(ABUSIVE_REFUSALS - 1))
    assert session.refused()


def test_token_warning_then_expiry() -> None:
    session = make()
    assert session.token_due(10**12) is None  # nothing to expire before authentication
    session.authenticated(Principal("alice"), expires_at_ms=HOUR_MS)
    assert session.token is not None
    assert session.token.deadline_ms == HOUR_MS - WARNING_MS
    assert session.token_due(HOUR_MS - WARNING_MS - 1) is None
    warning = session.token_due(HOUR_MS - WARNING_MS)
    assert warning == WarnExpiring(HOUR_MS, HOUR_MS - 5_000)
    event = warning.event(HOUR_MS - WARNING_MS)
    assert event.type == "auth_expiring"
    assert event.payload.model_dump() == {
        "expiresAt": "1970-01-01T01:00:00.000Z",
        "refreshBefore": "1970-01-01T00:59:55.000Z",
        "expiresIn": 60.0,
    }
    assert session.token_due(HOUR_MS - 1) is None  # warned once per token
    assert session.token.deadline_ms == HOUR_MS
    assert not session.token_expired(HOUR_MS - 1)
    assert session.token_expired(HOUR_MS)
    expired = session.token_due(HOUR_MS)
    assert isinstance(expired, CloseExpired)
    error = expired.event(HOUR_MS)
    assert error.type == "connection_error"
    assert error.payload.errorCode == "TOKEN_EXPIRED"


def test_a_short_token_is_warned_at_once() -> None:
    session = make()
    session.authenticated(Principal("alice"), expires_at_ms=4_000)
    warning = session.token_due(1_000)
    assert isinstance(warning, WarnExpiring)
    assert warning.refresh_before_ms == 1_000  # never in the past
    assert warning.event(1_000).payload.expiresIn == 3.0


def test_refresh_moves_the_expiry_for_the_same_user_and_role_only() -> None:
    session = make()
    session.authenticated(Principal("alice", name="Alice"), expires_at_ms=HOUR_MS)
    assert isinstance(session.token_due(HOUR_MS - 1), WarnExpiring)
    for other in (Principal("bob"), Principal("alice", role="admin")):
        with pytest.raises(PermissionDenied):
            session.refreshed(other, expires_at_ms=2 * HOUR_MS, now_ms=HOUR_MS - 1)
    assert session.token is not None
    assert session.token.expires_at_ms == HOUR_MS  # refused: the old expiry keeps running
    answer = session.refreshed(Principal("alice"), expires_at_ms=2 * HOUR_MS, now_ms=HOUR_MS - 1)
    assert answer.type == "auth_refreshed"
    assert answer.payload.model_dump() == {"expiresAt": "1970-01-01T02:00:00.000Z"}
    assert session.principal == Principal("alice", name="Alice")  # identity as authenticated
    assert session.token_due(HOUR_MS) is None
    assert isinstance(session.token_due(2 * HOUR_MS - WARNING_MS), WarnExpiring)  # warned anew
    assert isinstance(session.token_due(2 * HOUR_MS), CloseExpired)


def test_refresh_before_authentication_is_a_bug() -> None:
    with pytest.raises(InvalidState):
        make().refreshed(Principal("alice"), expires_at_ms=HOUR_MS, now_ms=1_000)


@given(
    exp=st.integers(0, 10**13),
    times=st.lists(st.integers(0, 10**13), min_size=1, max_size=20).map(sorted),
)
def test_token_lifetime_rules(exp: int, times: list[int]) -> None:
    """At most one warning, never before its deadline; expiry exactly from exp on."""
    lifetime = TokenLifetime(exp)
    warnings = 0
    for now in times:
        deadline = lifetime.deadline_ms
        due = lifetime.due(now)
        if now >= exp:
            assert isinstance(due, CloseExpired)
        elif isinstance(due, WarnExpiring):
            warnings += 1
            assert now >= deadline
            assert now <= due.refresh_before_ms <= exp
        else:
            assert due is None
            assert now < deadline
    assert warnings <= 1
