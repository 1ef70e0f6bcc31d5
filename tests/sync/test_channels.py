"""Unit tests of sync.channels authorization decisions."""

from __future__ import annotations

import pytest

from tripsage_sync.sync.channels import Channel, Facts, Principal, authorize_read
from tripsage_sync.sync.errors import ChannelNotFound, InvalidMessage, PermissionDenied

ALICE = Principal("alice")
AGENT = Principal("bot", role="agent")
ADMIN = Principal("root", role="admin")


def test_parse() -> None:
    assert Channel.parse("global") == Channel("global")
    assert Channel.parse("trip:t-1").name == "trip:t-1"
    with pytest.raises(ChannelNotFound):
        Channel.parse("weather:paris")
    with pytest.raises(ChannelNotFound):
        Channel.parse("global:x")
    with pytest.raises(InvalidMessage):
        Channel.parse("chat:has space")


def test_user_specific_is_the_principals_own_user_channel() -> None:
    odd = Principal("auth0|1234")  # a JWT subject the channel-name syntax would refuse
    assert Channel.resolve("user_specific", ALICE) == Channel("user", "alice")
    assert Channel.resolve("user_specific", odd).name == "user:auth0|1234"
    assert Channel.resolve("trip:t-1", ALICE) == Channel.parse("trip:t-1")
    assert Channel.resolve_name("user_specific", ALICE) == "user:alice"
    assert Channel.resolve_name("old-channel", ALICE) == "old-channel"  # not checked
    with pytest.raises(ChannelNotFound):
        Channel.resolve("old-channel", ALICE)
    authorize_read(ALICE, Channel.resolve("user_specific", ALICE), Facts())


@pytest.mark.parametrize(
    ("principal", "name", "facts", "allowed"),
    [
        (ALICE, "global", Facts(), True),
        (ALICE, "user:alice", Facts(), True),
        (ALICE, "user:bob", Facts(), False),
        (ALICE, "agent:alice", Facts(), True),
        (ALICE, "agent:bob", Facts(), False),
        (AGENT, "agent:bob", Facts(), True),
        (ALICE, "chat:s", Facts(chat_members=frozenset({"alice"})), True),
        (ALICE, "chat:s", Facts(chat_members=frozenset({"bob"})), False),
        (ALICE, "chat:s", Facts(chat_members=None), False),
        (AGENT, "chat:s", Facts(chat_members=frozenset({"bob"})), True),
        (AGENT, "chat:s", Facts(chat_members=None), False),
        (ALICE, "trip:t", Facts(trip_permission="viewer"), True),
        (ALICE, "trip:t", Facts(), False),
        (ADMIN, "trip:t", Facts(), True),
    ],
)
def test_authorize_read(principal: Principal, name: str, facts: Facts, allowed: bool) -> None:
    channel = Channel.parse(name)
    if allowed:
        authorize_read(principal, channel, facts)
    else:
        with pytest.raises(PermissionDenied):
            authorize_read(principal, channel, facts)
