"""Presence of a trip served by several nodes: other nodes' members and field locks."""

from __future__ import annotations

from tripsage_sync.sync.presence import FieldLock, Member, Presence


def member(connection_id: str, user_id: str, field: str | None = None) -> Member:
    return Member(connection_id, user_id, user_id.title(), None, "editor", 1_000, field)


def test_other_nodes_locks_count_as_holders_until_their_report_expires() -> None:
    presence = Presence("trip-1")
    presence.join(member("c1", "alice"))
    presence.lock("c1", "notes", "lock-a", now_ms=1_000)
    bobs = FieldLock("lock-b", "notes", "bob", "Bob", "c9", expires_ms=31_000)
    assert presence.set_remote("node-b", (member("c9", "bob", "notes"),), 10_000, (bobs,))
    assert {h.user_id for h in presence.holders("notes", 2_000)} == {"alice", "bob"}
    assert presence.holders("budget", 2_000) == []
    # A lock that ran out is not held, even before the node says so.
    assert {h.user_id for h in presence.holders("notes", 31_000)} == {"alice"}
    # The node stops reporting (killed): its members and locks go with the report.
    assert presence.expire_remote(10_000)
    assert presence.remote == {}
    assert presence.remote_locks == {}
    assert [h.user_id for h in presence.holders("notes", 2_000)] == ["alice"]


def test_a_report_without_members_forgets_the_nodes_locks() -> None:
    presence = Presence("trip-1")
    lock = FieldLock("lock-b", "notes", "bob", "Bob", "c9", expires_ms=31_000)
    presence.set_remote("node-b", (member("c9", "bob", "notes"),), 10_000, (lock,))
    assert presence.set_remote("node-b", (), 10_000)
    assert presence.holders("notes", 2_000) == []
