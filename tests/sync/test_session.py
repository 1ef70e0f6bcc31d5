"""Unit tests of the connection state machine."""

from __future__ import annotations

import pytest

from sync.channels import Principal
from sync.errors import InvalidState
from sync.session import ABUSIVE_REFUSALS, Session, State


def make() -> Session:
    return Session("c1", "chat", "s1", now_ms=1000, heartbeat_interval_s=25, auth_timeout_s=10)


def test_happy_path_and_illegal_moves() -> None:
    session = make()
    assert session.state is State.AWAITING_AUTH
    with pytest.raises(InvalidState):
        _ = session.user_id
    session.authenticated(Principal("alice"))
    assert session.is_open
    assert session.user_id == "alice"
    with pytest.raises(InvalidState):  # Rule 1: only once
        session.authenticated(Principal("bob"))
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
    assert beat.payload["metrics"] == {"uptime": 25.0, "messagesSent": 1, "messagesReceived": 1}
    assert beat.payload["serverTime"] == "1970-01-01T00:00:26.000Z"


def test_abuse_counter() -> None:
    session = make()
    assert not any(session.refused() for _ in range(ABUSIVE_REFUSALS - 1))
    session.allowed()
    assert not any(session.refused() for _ in range(ABUSIVE_REFUSALS - 1))
    assert session.refused()
