"""A Yjs peer's update that only adds new scalar keys, vetted from its bytes alone.

The shadow (:mod:`sync.document.shadow`) answers every question about a
peer's update, at the price of applying it twice under observers. The most
common update of a map-editing peer needs none of that: it adds keys the trip
never had, each a plain value, and nothing else. :func:`new_keys` recognises
exactly that shape from the decoded bytes (:func:`sync.yupdate.decode_update`)
and the live doc's state vector, so the update can go to the live doc once:

- every struct is an item holding one plain value (``ContentAny``: null,
  boolean, number or string) whose parent is the root map, with its key and
  no origins (a key nobody had written: no earlier item to follow);
- each client's items continue its clock in the live doc exactly, clients in
  one block each: nothing is a duplicate and nothing waits as a pending struct;
- no delete set, and nothing pending in the shadow
  (:meth:`sync.document.shadow.Shadow.note_pending`): the shadow would
  integrate it once these items arrive, the live doc would not;
- each key is new (no item of the root map ever held it), written once, keeps
  the field-name rule, is not a text field and not a manual field (those are
  decided by :func:`sync.yupdate.seen_values`), and its value is valid
  (:func:`sync.conflicts.validate_value`).

Anything else, a refusal included, is left to the shadow path, which decides
it as before: this module only ever accepts, and only what the shadow path
would accept with the same effect. Because every item integrates at once and
pycrdt only panics on updates it cannot integrate, the live doc never sees
bytes a panic could come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tripsage_sync.sync.conflicts import (
    JSON,
    MAX_VALUE_BYTES,
    InvalidValue,
    is_field_name,
    normalise_json,
    validate_value,
)
from tripsage_sync.sync.document.schema import ROOT_MAP, TEXT_FIELDS
from tripsage_sync.sync.document.state import DocState
from tripsage_sync.sync.yupdate import ANY_REF, MalformedUpdate, Struct, decode_update

__all__ = ["NewKeys", "new_keys"]

_PLAIN: Final = (str, int, float, bool, type(None))
_REPLACED: Final = "\ufffd"  # what the reader decodes invalid UTF-8 to
# A string this long is within MAX_VALUE_BYTES as JSON: at most 12 bytes a character
# (an astral one, escaped as a surrogate pair), and the quotes.
_SHORT_STRING: Final = (MAX_VALUE_BYTES - 2) // 12


@dataclass(frozen=True, slots=True)
class NewKeys:
    """An update :func:`new_keys` accepted: what it writes, and the doc after it."""

    values: dict[str, JSON]  # key -> validated value
    written: dict[str, list[Struct]]  # key -> its item (for the root map's item index)
    clocks: dict[int, int]  # the live state vector once the update is applied


def new_keys(state: DocState, manual_fields: frozenset[str], update: bytes) -> NewKeys | None:
    """The update's new keys if it has exactly the shape above, else ``None``."""
    if state.shadow is not None and state.shadow.pending:
        return None
    try:
        decoded = decode_update(update)
    except MalformedUpdate:
        return None
    if decoded.delete_set or not decoded.structs:
        return None
    clocks = dict(state.clocks())
    keys = state.keys()
    values: dict[str, JSON] = {}
    written: dict[str, list[Struct]] = {}
    done: set[int] = set()  # clients whose block ended
    client = None
    for struct in decoded.structs:
        if struct.client != client:
            if struct.client in done:
                return None
            if client is not None:
                done.add(client)
            client = struct.client
        name = struct.parent_sub
        if (
            struct.ref != ANY_REF
            or struct.origin is not None
            or struct.right_origin is not None
            or struct.parent != ROOT_MAP
            or name is None
            or struct.length != 1
            or len(struct.values) != 1
            or clocks.get(struct.client, 0) != struct.clock
        ):
            return None
        if (
            name in values
            or name in manual_fields
            or name in TEXT_FIELDS
            or not is_field_name(name)
            or name in keys.by_key
            or state.kind(name) is not None
        ):
            return None
        raw = struct.values[0]
        if not isinstance(raw, _PLAIN) or (isinstance(raw, str) and _REPLACED in raw):
            return None
        try:
            # A short scalar is far within the size limit: only long strings are measured.
            short = not isinstance(raw, str) or len(raw) <= _SHORT_STRING
            values[name] = normalise_json(raw) if short else validate_value(raw)
        except InvalidValue:
            return None
        written[name] = [struct]
        clocks[struct.client] = struct.clock + 1
    return NewKeys(values, written, clocks)
