"""The y-websocket protocol: frames and the awareness table of a room (sans-I/O).

Theory of operation
-------------------
A y-websocket frame is one binary WebSocket message (y-protocols ``sync.js``,
``awareness.js``, ``auth.js``; y-websocket ``messageSync = 0``,
``messageAwareness = 1``, ``messageAuth = 2``, ``messageQueryAwareness = 3``)::

    sync           0  varuint(step)  varuint8array(payload)
                      step 0: SyncStep1, payload = state vector
                      step 1: SyncStep2, payload = update (the reply to a step 1)
                      step 2: Update,    payload = update
    awareness      1  varuint8array( varuint(n)
                                     { varuint(client) varuint(clock) varstring(json) }*n )
    auth           2  varuint(0 = permission denied)  varstring(reason)
    query aw.      3

:func:`parse_frame` turns bytes into one of the frame classes below or raises
:class:`MalformedFrame`; the ``*_frame`` functions encode. Document bytes are
not interpreted here (:mod:`sync.document` does that).

Awareness (:class:`AwarenessTable`)
    One table per trip room. Each awareness client id belongs to the
    connection that announced it first (a peer cannot overwrite or remove
    another peer's state); ids the server makes for JSON clients belong to
    the server. An entry is taken when its clock is newer, or equal with a
    removal (the y-protocols rule), and every accepted state is re-stamped
    with the connection's verified identity: ``user.id`` and ``user.name``
    come from the token, never from the peer. A leaving connection's states
    are removed with their current clock (what y-protocols' own
    ``removeAwarenessStates`` sends); states the server owns are removed with
    a bumped clock, since the server is their author.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Final

from tripsage_sync.sync.errors import InvalidMessage
from tripsage_sync.sync.yupdate import ByteReader, MalformedUpdate

__all__ = [
    "CLOSE_FORBIDDEN",
    "CLOSE_MALFORMED",
    "CLOSE_TOO_LARGE",
    "CLOSE_TRY_AGAIN_LATER",
    "CLOSE_UNAUTHORIZED",
    "CLOSE_UNPROCESSABLE",
    "EMPTY_UPDATE",
    "MAX_AWARENESS_CLIENTS_PER_PEER",
    "MAX_AWARENESS_STATE_BYTES",
    "YJS_CLOSE_CODES",
    "AuthFrame",
    "AwarenessEntry",
    "AwarenessFrame",
    "AwarenessTable",
    "MalformedFrame",
    "QueryAwarenessFrame",
    "SyncStep1",
    "SyncStep2",
    "SyncUpdate",
    "YFrame",
    "auth_denied_frame",
    "awareness_frame",
    "encode_var_uint",
    "parse_frame",
    "server_client_id",
    "sync_step1_frame",
    "sync_step2_frame",
    "sync_update_frame",
]

# Close codes of the Yjs endpoint. 4400-4499: permanent for y-websocket (it stops
# reconnecting), mirroring HTTP 4xx.
CLOSE_MALFORMED: Final = 4400
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403
CLOSE_TOO_LARGE: Final = 4413
CLOSE_UNPROCESSABLE: Final = 4422
CLOSE_TRY_AGAIN_LATER: Final = 1013  # RFC 6455 7.4.1 (IANA registry): transient
# Each close code -> (what it means, whether a client reconnects): docs/asyncapi.json.
YJS_CLOSE_CODES: Final = {
    CLOSE_MALFORMED: ("a frame or update that does not parse", False),
    CLOSE_UNAUTHORIZED: ("bad, missing or expired token (also at the token's exp)", False),
    CLOSE_FORBIDDEN: ("not a collaborator of the trip, or no such trip", False),
    CLOSE_TOO_LARGE: ("a frame over TRIPSAGE_MAX_MESSAGE_SIZE", False),
    CLOSE_UNPROCESSABLE: ("an update outside the trip schema", False),
    CLOSE_TRY_AGAIN_LATER: ("the server is full or draining: reconnect later", True),
}

MESSAGE_SYNC: Final = 0
MESSAGE_AWARENESS: Final = 1
MESSAGE_AUTH: Final = 2
MESSAGE_QUERY_AWARENESS: Final = 3
SYNC_STEP1: Final = 0
SYNC_STEP2: Final = 1
SYNC_UPDATE: Final = 2
AUTH_PERMISSION_DENIED: Final = 0
EMPTY_UPDATE: Final = b"\x00\x00"  # no structs, no deletions
MAX_AWARENESS_CLIENTS_PER_PEER: Final = 8
MAX_AWARENESS_STATE_BYTES: Final = 16 * 1024


class MalformedFrame(InvalidMessage):
    """Bytes that are not a y-websocket frame."""


@dataclass(frozen=True, slots=True)
class SyncStep1:
    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: dict[str, Any] | None  # None removes the client's state


@dataclass(frozen=True, slots=True)
class AwarenessFrame:
    entries: tuple[AwarenessEntry, ...]


@dataclass(frozen=True, slots=True)
class QueryAwarenessFrame:
    pass


@dataclass(frozen=True, slots=True)
class AuthFrame:
    """An auth message from a peer (y-websocket clients never send one; ignored)."""


YFrame = SyncStep1 | SyncStep2 | SyncUpdate | AwarenessFrame | QueryAwarenessFrame | AuthFrame


def encode_var_uint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def _var_bytes(data: bytes) -> bytes:
    return encode_var_uint(len(data)) + data


def parse_frame(data: bytes) -> YFrame:
    """One y-websocket frame; raises :class:`MalformedFrame`."""
    reader = ByteReader(data)
    try:
        kind = reader.varuint()
        if kind == MESSAGE_SYNC:
            step = reader.varuint()
            payload = reader.take(reader.varuint())
            frame: YFrame
            if step == SYNC_STEP1:
                frame = SyncStep1(payload)
            elif step == SYNC_STEP2:
                frame = SyncStep2(payload)
            elif step == SYNC_UPDATE:
                frame = SyncUpdate(payload)
            else:
                raise MalformedFrame(f"Unknown sync step {step}")
        elif kind == MESSAGE_AWARENESS:
            frame = AwarenessFrame(_awareness_entries(reader.take(reader.varuint())))
        elif kind == MESSAGE_QUERY_AWARENESS:
            frame = QueryAwarenessFrame()
        elif kind == MESSAGE_AUTH:
            return AuthFrame()
        else:
            raise MalformedFrame(f"Unknown message type {kind}")
    except MalformedUpdate as exc:
        raise MalformedFrame(str(exc)) from None
    if reader.pos != len(data):
        raise MalformedFrame("Trailing bytes after frame")
    return frame


def _awareness_entries(payload: bytes) -> tuple[AwarenessEntry, ...]:
    reader = ByteReader(payload)
    entries = []
    for _ in range(reader.count()):
        client_id, clock = reader.varuint(), reader.varuint()
        raw = reader.take(reader.varuint())
        if len(raw) > MAX_AWARENESS_STATE_BYTES:
            raise MalformedFrame("Awareness state too large")
        try:
            state = json.loads(raw)
        except ValueError:
            raise MalformedFrame("Awareness state is not JSON") from None
        if state is not None and not isinstance(state, dict):
            state = {"value": state}
        entries.append(AwarenessEntry(client_id, clock, state))
    if reader.pos != len(payload):
        raise MalformedFrame("Trailing bytes after awareness update")
    return tuple(entries)


def sync_step1_frame(state_vector: bytes) -> bytes:
    return bytes([MESSAGE_SYNC, SYNC_STEP1]) + _var_bytes(state_vector)


def sync_step2_frame(update: bytes) -> bytes:
    return bytes([MESSAGE_SYNC, SYNC_STEP2]) + _var_bytes(update)


def sync_update_frame(update: bytes) -> bytes:
    return bytes([MESSAGE_SYNC, SYNC_UPDATE]) + _var_bytes(update)


def awareness_frame(entries: list[AwarenessEntry]) -> bytes:
    return _awareness_frame(
        len(entries), [encode_entry(e.client_id, e.clock, e.state) for e in entries]
    )


def encode_entry(client_id: int, clock: int, state: dict[str, Any] | None) -> bytes:
    """One entry of an awareness frame: client, clock, the state as JSON."""
    encoded = json.dumps(state, separators=(",", ":")).encode()
    return encode_var_uint(client_id) + encode_var_uint(clock) + _var_bytes(encoded)


def _awareness_frame(count: int, encoded: list[bytes]) -> bytes:
    body = encode_var_uint(count) + b"".join(encoded)
    return bytes([MESSAGE_AWARENESS]) + _var_bytes(body)


def auth_denied_frame(reason: str) -> bytes:
    """y-protocols ``writePermissionDenied``: y-websocket logs the reason."""
    return bytes([MESSAGE_AUTH, AUTH_PERMISSION_DENIED]) + _var_bytes(reason.encode())


@dataclass(slots=True)
class _Slot:
    owner: str
    clock: int
    state: dict[str, Any] | None
    encoded: bytes = b""  # the entry as sent (encode_entry), made once per state


@dataclass
class AwarenessTable:
    """Awareness states of one room, by awareness client id (see the module docstring).

    Each state is encoded once, when it is set: a joining peer's frame of every
    state (:meth:`current_frame`) joins those bytes, and is itself kept until
    the table changes, so that a room of N peers does not encode N states for
    each of N joins.
    """

    slots: dict[int, _Slot] = field(default_factory=dict)
    _owned: dict[str, set[int]] = field(default_factory=dict)  # owner -> its client ids
    _frame: bytes | None = None  # current_frame(), until the table changes

    def _set(self, client_id: int, slot: _Slot, clock: int, state: dict[str, Any] | None) -> None:
        slot.clock, slot.state = clock, state
        slot.encoded = b"" if state is None else encode_entry(client_id, clock, state)
        self._frame = None

    def _add(self, client_id: int, owner: str, clock: int) -> _Slot:
        slot = self.slots[client_id] = _Slot(owner, clock, None)
        self._owned.setdefault(owner, set()).add(client_id)
        return slot

    def _drop(self, client_id: int) -> None:
        slot = self.slots.pop(client_id)
        owned = self._owned.get(slot.owner)
        if owned is not None:
            owned.discard(client_id)
            if not owned:
                del self._owned[slot.owner]
        self._frame = None

    def receive(
        self, owner: str, entries: tuple[AwarenessEntry, ...], user: dict[str, Any]
    ) -> list[AwarenessEntry]:
        """Apply a peer's entries; the accepted ones, identity-stamped, to broadcast."""
        accepted = []
        for entry in entries:
            slot = self.slots.get(entry.client_id)
            if slot is None:
                owned = len(self._owned.get(owner, ()))
                if entry.state is None or owned >= MAX_AWARENESS_CLIENTS_PER_PEER:
                    continue
                slot = self._add(entry.client_id, owner, -1)
            elif slot.owner != owner:
                continue  # another connection's client id: not this peer's to change
            newer = entry.clock > slot.clock
            removal = entry.clock == slot.clock and entry.state is None and slot.state is not None
            if not (newer or removal):
                continue
            state = None if entry.state is None else {**entry.state, "user": _stamp(entry, user)}
            self._set(entry.client_id, slot, entry.clock, state)
            accepted.append(AwarenessEntry(entry.client_id, entry.clock, state))
        return accepted

    def set_server_state(
        self, client_id: int, owner: str, state: dict[str, Any] | None
    ) -> AwarenessEntry | None:
        """Set (or with None remove) a state the server makes; the entry to broadcast."""
        slot = self.slots.get(client_id)
        if slot is None:
            if state is None:
                return None
            # y-protocols takes a new client's state only from clock 1 on
            slot = self._add(client_id, owner, 0)
        if slot.state == state:
            return None
        self._set(client_id, slot, slot.clock + 1, state)
        entry = AwarenessEntry(client_id, slot.clock, state)
        if state is None:
            self._drop(client_id)
        return entry

    def remove_owner(self, owner: str) -> list[AwarenessEntry]:
        """Forget a connection's states; the removals to broadcast."""
        removed = []
        for client_id in sorted(self._owned.get(owner, ())):
            slot = self.slots[client_id]
            self._drop(client_id)
            if slot.state is not None:
                removed.append(AwarenessEntry(client_id, slot.clock, None))
        return removed

    def current(self) -> list[AwarenessEntry]:
        """Every present state (what a new peer is sent at once)."""
        return [
            AwarenessEntry(client_id, slot.clock, slot.state)
            for client_id, slot in sorted(self.slots.items())
            if slot.state is not None
        ]

    def current_frame(self) -> bytes | None:
        """:func:`awareness_frame` of :meth:`current`, or None when no state is present."""
        if self._frame is None:
            encoded = [self.slots[c].encoded for c in sorted(self.slots)]
            encoded = [e for e in encoded if e]
            self._frame = _awareness_frame(len(encoded), encoded) if encoded else b""
        return self._frame or None

    def states_of(self, owner: str) -> list[dict[str, Any]]:
        slots = [self.slots[c] for c in self._owned.get(owner, ())]
        return [s.state for s in slots if s.state is not None]


def server_client_id(key: str, taken: set[int]) -> int:
    """A 32-bit awareness client id for a state the server makes, not in ``taken``."""
    salt = 0
    while True:
        digest = hashlib.blake2b(f"{key}\x1f{salt}".encode(), digest_size=4).digest()
        client_id = int.from_bytes(digest, "big")
        if client_id and client_id not in taken:
            return client_id
        salt += 1


def _stamp(entry: AwarenessEntry, user: dict[str, Any]) -> dict[str, Any]:
    claimed = entry.state.get("user") if entry.state is not None else None
    extra = claimed if isinstance(claimed, dict) else {}
    return {**extra, **user}
