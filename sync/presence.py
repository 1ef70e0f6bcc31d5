"""Presence and advisory field locks of one trip (``trip_collaborator_presence``).

Theory of operation
-------------------
Presence is kept per *connection* (a user with two devices has two entries)
and reported per *user*: a user is in ``activeCollaborators`` while any of
their connections is on the trip, ``isActive`` while any of them was active
within ``idle_after_ms``, ``currentField`` from the most recent focus.
Nothing here reads a clock: every call takes ``now_ms``, and
:meth:`Presence.expire` returns what changed when time passed (idle users,
expired locks) so the shell can broadcast it.

A field lock (``trip_field_editing_start``) is advisory: it is shown to the
others and released on stop, on disconnect or after ``lock_ttl_ms``; it never
blocks an edit. One user holds at most one lock per field.

In cluster mode other nodes report their members and the locks those hold
(:meth:`Presence.set_remote`); a report lasts until it expires
(:meth:`Presence.expire_remote`), so a node that stopped drops out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["IDLE_AFTER_MS", "LOCK_TTL_MS", "FieldLock", "Member", "Presence"]

IDLE_AFTER_MS: Final = 60_000
LOCK_TTL_MS: Final = 30_000


@dataclass(slots=True)
class Member:
    connection_id: str
    user_id: str
    user_name: str
    avatar_url: str | None
    permission: str
    last_seen_ms: int
    current_field: str | None = None


@dataclass(frozen=True, slots=True)
class FieldLock:
    lock_id: str
    field_name: str
    user_id: str
    user_name: str
    connection_id: str
    expires_ms: int


@dataclass(slots=True)
class Presence:
    trip_id: str
    idle_after_ms: int = IDLE_AFTER_MS
    lock_ttl_ms: int = LOCK_TTL_MS
    members: dict[str, Member] = field(default_factory=dict)  # by connection id
    locks: dict[tuple[str, str], FieldLock] = field(default_factory=dict)  # (field, user)
    _idle_reported: set[str] = field(default_factory=set)
    # Cluster mode: the members other nodes last reported, by node, with the time their
    # report expires (a node that stops reporting, killed say, drops out then).
    remote: dict[str, tuple[tuple[Member, ...], int]] = field(default_factory=dict)
    # ... and the field locks their members hold, by node (gone with the node's report).
    remote_locks: dict[str, tuple[FieldLock, ...]] = field(default_factory=dict)

    # -- other nodes' members (cluster mode) ------------------------------------------

    def set_remote(
        self,
        node: str,
        members: tuple[Member, ...],
        expires_ms: int,
        locks: tuple[FieldLock, ...] = (),
    ) -> bool:
        """Another node's members and their locks now; ``True`` when what others see
        changed."""
        before = self.remote.get(node)
        self.remote[node] = (members, expires_ms)
        self.remote_locks[node] = locks
        if not members:
            del self.remote[node]
            del self.remote_locks[node]
        return (before is None and bool(members)) or (before is not None and before[0] != members)

    def expire_remote(self, now_ms: int) -> bool:
        """Forget reports that expired; ``True`` when one with members did."""
        gone = [node for node, (_, expires) in self.remote.items() if expires <= now_ms]
        for node in gone:
            del self.remote[node]
            self.remote_locks.pop(node, None)
        return bool(gone)

    # -- membership ------------------------------------------------------------

    def join(self, member: Member) -> bool:
        """Add a connection; ``True`` when the user was not present before."""
        new_user = not self.has_user(member.user_id)
        self.members[member.connection_id] = member
        return new_user

    def leave(self, connection_id: str) -> tuple[Member | None, list[FieldLock], bool]:
        """Remove a connection: (its entry, locks released, whether the user left)."""
        member = self.members.pop(connection_id, None)
        if member is None:
            return None, [], False
        released = [lock for lock in self.locks.values() if lock.connection_id == connection_id]
        for lock in released:
            del self.locks[(lock.field_name, lock.user_id)]
        return member, released, not self.has_user(member.user_id)

    def has_user(self, user_id: str) -> bool:
        return any(m.user_id == user_id for m in self.members.values())

    def touch(
        self,
        connection_id: str,
        now_ms: int,
        *,
        current_field: str | None = None,
        focus: bool = False,
    ) -> bool:
        """Record activity; ``True`` when what others see changed."""
        member = self.members.get(connection_id)
        if member is None:
            return False
        was_idle = member.user_id in self._idle_reported
        self._idle_reported.discard(member.user_id)
        member.last_seen_ms = now_ms
        changed = was_idle
        if focus and member.current_field != current_field:
            member.current_field = current_field
            changed = True
        return changed

    def set_permission(self, user_id: str, permission: str) -> None:
        for member in self.members.values():
            if member.user_id == user_id:
                member.permission = permission

    def connection_ids(self, user_id: str) -> list[str]:
        return [cid for cid, m in self.members.items() if m.user_id == user_id]

    # -- locks -------------------------------------------------------------------

    def lock(self, connection_id: str, field_name: str, lock_id: str, now_ms: int) -> FieldLock:
        member = self.members[connection_id]
        lock = FieldLock(
            lock_id,
            field_name,
            member.user_id,
            member.user_name,
            connection_id,
            now_ms + self.lock_ttl_ms,
        )
        self.locks[(field_name, member.user_id)] = lock
        self.touch(connection_id, now_ms, current_field=field_name, focus=True)
        return lock

    def unlock(self, connection_id: str, field_name: str, now_ms: int) -> FieldLock | None:
        member = self.members.get(connection_id)
        if member is None:
            return None
        lock = self.locks.pop((field_name, member.user_id), None)
        self.touch(connection_id, now_ms, current_field=None, focus=True)
        return lock

    def holders(self, field_name: str, now_ms: int) -> list[FieldLock]:
        """Who holds a lock on ``field_name`` (of every node, in cluster mode)."""
        held = [lock for (name, _), lock in self.locks.items() if name == field_name]
        for locks in self.remote_locks.values():
            held += [lk for lk in locks if lk.field_name == field_name and lk.expires_ms > now_ms]
        return held

    # -- time ------------------------------------------------------------------------

    def expire(self, now_ms: int) -> tuple[list[FieldLock], bool]:
        """Drop expired locks and mark idle users: (locks expired, presence changed)."""
        expired = [lock for lock in self.locks.values() if lock.expires_ms <= now_ms]
        for lock in expired:
            del self.locks[(lock.field_name, lock.user_id)]
        changed = False
        for user_id, last_seen in self._last_seen_by_user().items():
            if now_ms - last_seen >= self.idle_after_ms and user_id not in self._idle_reported:
                self._idle_reported.add(user_id)
                changed = True
        return expired, changed

    def next_deadline_ms(self) -> int | None:
        deadlines = [lock.expires_ms for lock in self.locks.values()]
        deadlines += [
            seen + self.idle_after_ms
            for user, seen in self._last_seen_by_user().items()
            if user not in self._idle_reported
        ]
        return min(deadlines) if deadlines else None

    def _last_seen_by_user(self) -> dict[str, int]:
        seen: dict[str, int] = {}
        for member in self.members.values():
            seen[member.user_id] = max(seen.get(member.user_id, 0), member.last_seen_ms)
        return seen

    # -- the wire view ---------------------------------------------------------------

    def active_collaborators(self, now_ms: int, iso: Any) -> list[dict[str, Any]]:
        """``activeCollaborators`` of ``trip_collaborator_presence``, one entry a user."""
        by_user: dict[str, list[Member]] = {}
        for member in self.members.values():
            by_user.setdefault(member.user_id, []).append(member)
        for members, expires in self.remote.values():
            if expires > now_ms:
                for member in members:
                    by_user.setdefault(member.user_id, []).append(member)
        result = []
        for user_id in sorted(by_user):
            entries = by_user[user_id]
            latest = max(entries, key=lambda m: m.last_seen_ms)
            focused = [m for m in entries if m.current_field is not None]
            current = max(focused, key=lambda m: m.last_seen_ms).current_field if focused else None
            result.append(
                {
                    "userId": user_id,
                    "userName": latest.user_name,
                    "avatarUrl": latest.avatar_url,
                    "lastSeen": iso(latest.last_seen_ms),
                    "currentField": current,
                    "isActive": now_ms - latest.last_seen_ms < self.idle_after_ms,
                    "permissionLevel": latest.permission,
                    "connections": len(entries),
                }
            )
        return result
