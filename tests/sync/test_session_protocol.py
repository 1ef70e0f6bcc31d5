"""The JSON endpoints' protocol without sockets: a fake client against the real Session.

h11's ``tests/helpers.py`` style: the client side is plain functions building
frames (:func:`auth`, :func:`message`, :func:`batch`), the facts the shell would
gather are scripted (:class:`Script`), and :class:`Wire` carries the session's
intents out the way ``api/transport/connection.py`` does, as the frames the
client would read and the close it would see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, assert_never

import pytest

from tripsage_sync.sync.channels import Principal, Role
from tripsage_sync.sync.errors import AuthError, RateLimited, ServerError
from tripsage_sync.sync.events import error_event
from tripsage_sync.sync.session import (
    ABUSIVE_REFUSALS,
    BindUser,
    ClaimSession,
    Close,
    CloseExpired,
    DispatchMessage,
    Intent,
    Ownership,
    Policy,
    Received,
    RefuseAuth,
    Send,
    SendError,
    SendHeartbeat,
    SendOutcome,
    Session,
    SetDeadline,
    State,
    Subscribe,
    SubscribeImplicit,
    WarnExpiring,
    Welcome,
)
from tripsage_sync.sync.wire import encode

HOUR_MS = 3_600_000
START_MS = 1_000
LIMIT_BYTES = 4096
POLICY = Policy(
    server_version="9.9.9",
    max_message_bytes=LIMIT_BYTES,
    max_connections=3,
    max_connections_per_user=2,
    reconnect_after_s=5.0,
    messages_per_min=100,
    auth_attempts_per_min=5,
    connections_per_min=10,
    subscriptions_per_min=20,
)


# -- the fake client: frames as a client builds them --------------------------------


def auth(
    token: str = "alice",
    *,
    session_id: str | None = None,
    channels: tuple[str, ...] = (),
    features: tuple[str, ...] = (),
) -> str:
    request: dict[str, Any] = {"type": "auth", "token": token}
    if session_id is not None:
        request["sessionId"] = session_id
    if channels:
        request["channels"] = list(channels)
    if features:
        request["features"] = list(features)
    return json.dumps(request)


def message(
    type_: str, payload: dict[str, Any] | None = None, *, id_: str = "m1"
) -> dict[str, Any]:
    return {"id": id_, "type": type_, "payload": payload or {}}


def text(value: Any) -> str:
    return json.dumps(value)


def batch(*items: Any, id_: str = "b1") -> str:
    return text(message("batch", {"messages": list(items)}, id_=id_))


def update(update_id: str = "u1") -> dict[str, Any]:
    payload = {"tripId": "t1", "updateId": update_id, "fieldName": "title", "value": "Rome"}
    payload["previousValue"] = "Paris"
    return message("optimistic_update_start", payload, id_=f"msg-{update_id}")


# -- the facts the shell would gather, scripted -------------------------------------


@dataclass(frozen=True)
class Token:
    principal: Principal
    expires_at_ms: int


def limited(what: str) -> RateLimited:
    return RateLimited(f"Rate limit exceeded: {what}", limits={"limit": 1}, retry_after=2.0)


@dataclass
class Script:
    """A token names its user (``bob``) or ``role:user`` (``agent:bot``); ``bad`` fails."""

    auth_limited: bool = False
    messages_limited: bool = False
    authenticated: int = 0
    per_user: int = 0
    owner: str | None = None
    members: frozenset[str] = frozenset()
    expires_at_ms: int = HOUR_MS
    asked: list[str] = field(default_factory=list)

    def spend_auth_attempt(self) -> RateLimited | None:
        self.asked.append("auth_attempt")
        return limited("authentication attempts per IP") if self.auth_limited else None

    def verify(self, token: str) -> Token:
        self.asked.append("verify")
        if token == "bad":
            raise AuthError("Invalid token", code="INVALID_TOKEN")
        role, _, user = token.rpartition(":")
        roles: dict[str, Role] = {"": "user", "agent": "agent", "admin": "admin"}
        return Token(Principal(user, role=roles[role]), self.expires_at_ms)

    def authenticated_count(self) -> int:
        self.asked.append("authenticated")
        return self.authenticated

    def connections_of(self, user_id: str) -> int:
        self.asked.append("connections_of")
        return self.per_user

    def ownership(self, session_id: str) -> Ownership:
        self.asked.append("ownership")
        return Ownership(self.owner, self.members)

    def spend_message(self, user_id: str) -> RateLimited | None:
        self.asked.append("message")
        return limited("messages per user") if self.messages_limited else None


# -- the shell, reduced to what the client would see ---------------------------------


@dataclass
class Wire:
    """Carries intents out as the connection does: the frames sent, the close, the
    messages handed to handlers (the welcome goes first, ahead of anything queued)."""

    session: Session
    facts: Script
    frames: list[dict[str, Any]] = field(default_factory=list)
    dispatched: list[str] = field(default_factory=list)
    close: tuple[int, str] | None = None
    granted: list[str] = field(default_factory=list)
    closing_handlers: set[str] = field(default_factory=set)  # message ids whose handler closes

    def send(self, data: str | bytes, now_ms: int = START_MS + 10) -> list[Intent]:
        intents = self.session.receive_frame(data, now_ms, self.facts)
        self.carry_out(intents, now_ms)
        return intents

    def tick(self, now_ms: int) -> list[Intent]:
        intents: list[Intent] = list(self.session.tick(now_ms))
        self.carry_out(intents, now_ms)
        return intents

    def _put(self, frame: Any) -> None:
        self.frames.append(json.loads(encode(frame)))

    def _close(self, code: int, reason: str, *frames: Any) -> None:
        if self.session.close(code):  # what the outbox asks before it closes
            for frame in frames:
                self._put(frame)
            self.close = (code, reason)

    def carry_out(self, intents: list[Intent], now_ms: int) -> None:
        for index, intent in enumerate(intents):
            if index and isinstance(intent, Received) and not self.session.accepting:
                return
            match intent:
                case Received() | SetDeadline() | BindUser() | ClaimSession() | SendHeartbeat():
                    pass
                case SubscribeImplicit():
                    self.granted.append(f"user:{self.session.user_id}")
                case Subscribe(channels=names):
                    self.granted.extend(names)
                case Welcome() as welcome:
                    response = json.loads(encode(welcome.response(self.granted)))
                    self.frames[:0] = [response, json.loads(encode(welcome.established))]
                case Send(event=event) | SendOutcome(event=event):
                    self._put(event)
                case SendError(error=error, in_reply_to=reply):
                    self._put(error_event(error, now_ms=now_ms, in_reply_to=reply))
                case WarnExpiring() as warning:
                    self._put(warning.event(now_ms))
                case Close(code=code, reason=reason, frames=frames):
                    self._close(code, reason, *frames)
                case RefuseAuth() as refusal:
                    self._close(refusal.code, refusal.reason, refusal.response)
                case CloseExpired() as expired:
                    self._close(expired.code, expired.reason, expired.event(now_ms))
                case DispatchMessage(message=msg):
                    self.dispatched.append(msg.id or "")
                    if msg.id in self.closing_handlers:  # e.g. the writer found a slow consumer
                        self.session.close(1001)
                case _:
                    assert_never(intent)

    def types(self) -> list[str]:
        return [frame.get("type", "auth_response") for frame in self.frames]


def connect(**script: Any) -> Wire:
    session = Session(
        "conn-1",
        "chat",
        "s1",
        now_ms=START_MS,
        heartbeat_interval_s=25,
        auth_timeout_s=10,
        policy=POLICY,
    )
    return Wire(session, Script(**script))


def opened(**script: Any) -> Wire:
    wire = connect(owner="alice", **script)
    wire.send(auth())
    assert wire.session.is_open
    wire.frames.clear()
    wire.facts.asked.clear()
    return wire


# -- authentication ------------------------------------------------------------------


def test_auth_success_claims_binds_joins_and_welcomes_first() -> None:
    wire = connect()
    wire.frames.append({"type": "queued_meanwhile"})
    frame = auth(channels=("trip:t1",), features=("message_batching",))
    intents = wire.send(frame)
    assert [type(intent) for intent in intents] == [
        Received,
        ClaimSession,
        BindUser,
        SetDeadline,
        SubscribeImplicit,
        Subscribe,
        Welcome,
    ]
    assert intents[0] == Received("auth", len(frame))
    assert intents[1] == ClaimSession("s1", "alice")
    assert intents[5] == Subscribe(("trip:t1",))
    # First on the wire: the response, then connection_established, then the rest.
    assert wire.types() == ["auth_response", "connection_established", "queued_meanwhile"]
    response, established = wire.frames[:2]
    assert response["success"] is True
    assert response["connectionId"] == "conn-1"
    assert response["availableChannels"] == ["trip:t1", "user:alice"]
    assert established["payload"]["serverVersion"] == "9.9.9"
    assert established["payload"]["limits"]["maxMessageSize"] == LIMIT_BYTES
    assert established["payload"]["limits"]["heartbeatInterval"] == 25
    assert wire.session.state is State.OPEN
    assert wire.session.batching
    assert wire.facts.asked == [
        "auth_attempt",
        "verify",
        "authenticated",
        "connections_of",
        "ownership",
    ]


def test_an_owned_session_is_not_claimed_and_agents_never_read_ownership() -> None:
    owner = connect(owner="alice")
    assert not any(isinstance(i, ClaimSession) for i in owner.send(auth()))
    shared = connect(owner="bob", members=frozenset({"alice"}))
    assert isinstance(shared.send(auth())[-1], Welcome)
    agent = connect(owner="bob")
    assert not any(isinstance(i, ClaimSession) for i in agent.send(auth("agent:bot")))
    assert "ownership" not in agent.facts.asked
    assert agent.session.is_open


AUTH_FAILURES = [
    pytest.param(auth()[:-1], {}, "AUTH_FAILED", 3000, id="invalid-json"),
    pytest.param(text({"type": "auth"}), {}, "AUTH_FAILED", 3000, id="no-token"),
    pytest.param(auth("bad"), {}, "INVALID_TOKEN", 3000, id="bad-token"),
    pytest.param(auth(session_id="other"), {}, "AUTH_FAILED", 3000, id="session-mismatch"),
    pytest.param(auth(), {"authenticated": 3}, "CONNECTION_LIMIT_EXCEEDED", 3001, id="server-full"),
    pytest.param(auth(), {"per_user": 2}, "CONNECTION_LIMIT_EXCEEDED", 1008, id="user-full"),
    pytest.param(auth(), {"auth_limited": True}, "RATE_LIMITED", 3001, id="rate-limited"),
    pytest.param(auth(), {"owner": "bob"}, "PERMISSION_DENIED", 1008, id="not-owner"),
]


@pytest.mark.parametrize(("frame", "script", "code", "close_code"), AUTH_FAILURES)
def test_auth_failure_answers_and_closes(
    frame: str, script: dict[str, Any], code: str, close_code: int
) -> None:
    wire = connect(**script)
    intents = wire.send(frame)
    assert [type(intent) for intent in intents] == [Received, RefuseAuth]
    (response,) = wire.frames  # the "Authentication Response", nothing else
    assert response["success"] is False
    assert response["code"] == code
    assert set(response) <= {"success", "error", "code", "retryAfter"}
    assert wire.close is not None
    assert wire.close[0] == close_code
    assert wire.session.state is State.CLOSING
    assert wire.session.principal is None


def test_a_refused_frame_spends_no_more_facts_than_its_rule_needed() -> None:
    limited_ip = connect(auth_limited=True)
    limited_ip.send(auth())
    assert limited_ip.facts.asked == ["auth_attempt"]  # no token verified
    bad = connect()
    bad.send(auth("bad"))
    assert bad.facts.asked == ["auth_attempt", "verify"]  # no storage read
    too_big = connect()
    too_big.send(auth("x" * LIMIT_BYTES))
    assert too_big.facts.asked == []  # not even an authentication attempt


def test_a_claim_lost_to_another_user_closes_1008() -> None:
    wire = connect()
    wire.send(auth())
    assert wire.session.claimed(Ownership("alice")) == []
    (refusal,) = wire.session.claimed(Ownership("bob"))
    assert isinstance(refusal, RefuseAuth)
    assert (refusal.code, refusal.error.code) == (1008, "PERMISSION_DENIED")


def test_auth_timeout_and_displacement() -> None:
    wire = connect()
    assert wire.tick(START_MS + 9_999) == [SetDeadline(START_MS + 10_000)]
    (refusal,) = wire.tick(START_MS + 10_000)
    assert isinstance(refusal, RefuseAuth)
    assert refusal.response.error == "Authentication timeout"
    assert wire.close == (3000, "Authentication timeout")
    assert wire.tick(START_MS + 20_000) == []  # the timer's work is done
    crowded = connect()
    (displaced,) = crowded.session.displaced()
    assert isinstance(displaced, RefuseAuth)
    assert (displaced.code, displaced.error.code) == (3001, "CONNECTION_LIMIT_EXCEEDED")
    assert opened().session.displaced() == []


# -- frames of an open connection ---------------------------------------------------


def test_a_frame_over_the_limit_closes_1009() -> None:
    for wire in (connect(), opened()):
        wire.send("x" * (LIMIT_BYTES + 1))
        assert wire.close == (1009, "message too large")
        assert [frame["type"] for frame in wire.frames] == ["error", "connection_error"]
        assert wire.frames[0]["payload"]["code"] == "MESSAGE_TOO_LARGE"
        assert wire.frames[0]["payload"]["details"] == {
            "size": LIMIT_BYTES + 1,
            "limit": LIMIT_BYTES,
        }
        late = text(message("connection_heartbeat"))
        assert wire.send(late) == [Received("ignored", len(late))]


def test_binary_frames_are_refused_and_the_connection_stays_open() -> None:
    wire = opened()
    intents = wire.send(b"\x00\x01")
    (counted, refusal) = intents
    assert counted == Received("binary", 2)
    assert isinstance(refusal, SendError)
    assert wire.frames[0]["payload"]["code"] == "INVALID_MESSAGE_FORMAT"
    assert wire.frames[0]["payload"]["details"]["received"] == "binary"
    assert wire.session.is_open
    assert not wire.dispatched


def test_an_invalid_frame_is_refused_with_the_field() -> None:
    wire = opened()
    wire.send(text(message("chat_message", {"content": 5})))
    (error,) = wire.frames
    assert error["payload"]["details"]["field"] == "payload.content"
    assert wire.session.is_open
    assert not wire.dispatched


def test_batch_items_are_parsed_one_by_one_and_batches_do_not_nest() -> None:
    wire = opened()
    nested = message("batch", {"messages": []}, id_="nested")
    frame = batch(
        message("chat_typing_start", id_="a"),
        message("chat_message", {"content": 5}, id_="broken"),
        nested,
        message("chat_message", {"content": "hi"}, id_="b"),
    )
    intents = wire.send(frame)
    assert [(type(i).__name__, getattr(i, "kind", None)) for i in intents] == [
        ("Received", "batch"),
        ("Received", "chat_typing_start"),
        ("DispatchMessage", None),
        ("Received", "invalid"),
        ("SendError", None),
        ("Received", "invalid"),
        ("SendError", None),
        ("Received", "chat_message"),
        ("DispatchMessage", None),
    ]
    assert wire.dispatched == ["a", "b"]  # in order, the invalid ones skipped
    broken, nesting = (frame["payload"] for frame in wire.frames)
    assert broken["details"]["messageId"] == "broken"
    assert nesting["message"] == "Batches cannot be nested"
    assert nesting["details"]["messageId"] == "nested"
    assert wire.session.is_open


def test_a_batch_stops_where_the_connection_closed() -> None:
    wire = opened()
    wire.closing_handlers.add("a")
    wire.send(batch(message("chat_typing_start", id_="a"), message("chat_typing_stop", id_="b")))
    assert wire.dispatched == ["a"]  # the next item's Received found the session closing


def test_ten_refusals_in_a_row_close_3001() -> None:
    wire = opened(messages_limited=True)
    for n in range(ABUSIVE_REFUSALS - 1):
        (_, refusal) = wire.send(text(message("chat_typing_start", id_=f"m{n}")))
        assert isinstance(refusal, SendError)
        assert refusal.in_reply_to == f"m{n}"
    assert wire.session.is_open
    assert not wire.dispatched
    wire.send(text(message("chat_typing_start", id_="last")))
    assert wire.close == (3001, "rate limited")
    assert [frame["type"] for frame in wire.frames[-2:]] == ["error", "connection_error"]
    assert wire.frames[-1]["payload"]["severity"] == "warning"


def test_an_allowed_message_resets_the_count_and_heartbeats_are_never_limited() -> None:
    wire = opened(messages_limited=True)
    for n in range(ABUSIVE_REFUSALS - 1):
        wire.send(text(message("chat_typing_start", id_=f"m{n}")))
    wire.send(text(message("connection_heartbeat", id_="beat")))
    assert wire.dispatched == ["beat"]
    wire.facts.messages_limited = False
    wire.send(text(message("chat_typing_start", id_="ok")))
    wire.facts.messages_limited = True
    wire.send(text(message("chat_typing_start", id_="again")))
    assert wire.session.is_open
    assert wire.session.consecutive_refusals == 1


def test_a_rate_limited_update_also_gets_its_rollback() -> None:
    wire = opened(messages_limited=True)
    intents = wire.send(text(update("u7")))
    assert [type(intent) for intent in intents] == [Received, SendError, SendOutcome]
    error, rollback = wire.frames
    assert error["payload"]["details"]["messageId"] == "msg-u7"
    assert rollback["type"] == "optimistic_update_rollback"
    assert rollback["payload"]["updateId"] == "u7"
    assert rollback["payload"]["rollbackToValue"] == "Paris"
    assert rollback["payload"]["retryAfter"] == 2000


def test_agents_are_not_rate_limited() -> None:
    wire = connect(messages_limited=True)
    wire.send(auth("agent:bot"))
    for n in range(ABUSIVE_REFUSALS + 1):
        wire.send(text(message("chat_typing_start", id_=f"m{n}")))
    assert len(wire.dispatched) == ABUSIVE_REFUSALS + 1
    assert "message" not in wire.facts.asked


def test_a_handler_error_answers_and_may_close() -> None:
    wire = opened()
    msg = wire.session.receive_frame(text(message("chat_typing_start")), START_MS, wire.facts)
    dispatched = msg[-1]
    assert isinstance(dispatched, DispatchMessage)
    refusal = ServerError("nope")
    assert wire.session.handler_failed(dispatched.message, refusal) == [SendError(refusal, "m1")]
    fatal = AuthError("gone")
    assert wire.session.handler_failed(dispatched.message, fatal)[1] == Close(3000, "auth_failed")


# -- time ---------------------------------------------------------------------------


def test_a_message_after_the_token_expired_closes_instead_of_being_handled() -> None:
    wire = opened(expires_at_ms=HOUR_MS)
    assert wire.send(text(message("chat_typing_start")), now_ms=HOUR_MS)[1:] == [CloseExpired()]
    assert not wire.dispatched
    assert wire.close == (3000, "token expired")
    assert wire.frames[-1]["payload"]["errorCode"] == "TOKEN_EXPIRED"


def test_the_timer_warns_then_closes_at_the_tokens_exp() -> None:
    wire = opened(expires_at_ms=START_MS + 45_000)  # its warning is due at connect
    assert wire.tick(START_MS + 20_000)[0] == WarnExpiring(START_MS + 45_000, START_MS + 40_000)
    assert wire.frames[-1]["type"] == "auth_expiring"
    assert wire.tick(START_MS + 21_000) == [SetDeadline(START_MS + 25_000)]  # warned once
    assert wire.tick(START_MS + 45_000) == [CloseExpired()]
    assert wire.close == (3000, "token expired")


def test_heartbeats_every_interval_and_the_idle_close_after_two() -> None:
    wire = opened()
    heard_ms = START_MS + 10  # the auth frame
    assert wire.tick(START_MS + 24_999) == [SetDeadline(START_MS + 25_000)]
    assert wire.tick(START_MS + 25_000) == [SendHeartbeat(), SetDeadline(START_MS + 50_000)]
    assert wire.tick(START_MS + 50_000) == [SendHeartbeat(), SetDeadline(heard_ms + 50_000)]
    (close,) = wire.tick(heard_ms + 50_000)
    assert isinstance(close, Close)
    assert (close.code, close.reason) == (1001, "idle timeout")
    assert wire.frames[-1]["type"] == "connection_close"
    assert wire.frames[-1]["payload"]["code"] == 1001
    assert wire.close == (1001, "idle timeout")


def test_any_frame_moves_the_idle_deadline() -> None:
    wire = opened()
    wire.send(text(message("connection_heartbeat")), now_ms=START_MS + 40_000)
    assert wire.tick(START_MS + 50_010)[-1] == SetDeadline(START_MS + 75_010)  # next beat
    assert wire.session.is_open
