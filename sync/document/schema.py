"""The trip schema and how its values are read from and written into Yjs.

Schema (kept exactly so standard Yjs clients can share the doc)
    The root is the Y.Map ``trip``. ``notes`` is a Y.Text (always present),
    list fields are Y.Arrays of plain JSON values, every other field is a
    plain JSON value (a scalar, or an object kept whole). A field's kind
    never changes; Y.Array fields are declared when the trip is created,
    because two concurrent creations of one Y.Array would drop one of them.

Values
    Validation and number normalisation are in :mod:`sync.conflicts`
    ("Values"): integral floats read back from Yjs become ints.

Text and list edits
    ``previousValue -> optimisticValue`` is diffed into inserts and deletes
    (:func:`sync.conflicts.diff_ops`), so edits of different parts merge.
    Text indexes in pycrdt 0.14 are UTF-8 byte offsets; they are computed
    from code point positions at character boundaries.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

from pycrdt import Array, Map, Text

from tripsage_sync.sync.conflicts import (
    JSON,
    InvalidValue,
    canonical_json,
    diff_ops,
    normalise_json,
)
from tripsage_sync.sync.errors import InvalidState

__all__ = [
    "ROOT_MAP",
    "TEXT_FIELDS",
    "FieldKind",
    "check_kind",
    "edit_list",
    "edit_text",
    "json_type",
    "kind_of_value",
    "read_field",
    "read_kind_and_field",
    "read_raw",
    "to_shared",
]

ROOT_MAP: Final = "trip"
TEXT_FIELDS: Final = frozenset({"notes"})


class FieldKind(StrEnum):
    SCALAR = "scalar"
    TEXT = "text"
    LIST = "list"


def json_type(value: object) -> str:
    """The JSON type name of a value a peer sent (for ``error`` details)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def kind_of_value(name: str, value: JSON) -> FieldKind:
    """The kind a new field ``name`` holding ``value`` is created with."""
    if name in TEXT_FIELDS:
        return FieldKind.TEXT
    return FieldKind.LIST if isinstance(value, list) else FieldKind.SCALAR


def check_kind(name: str, kind: FieldKind | None, value: JSON) -> None:
    """Raise :class:`InvalidValue` unless ``value`` fits a field of ``kind`` (None: new)."""
    if kind is FieldKind.TEXT and not isinstance(value, str):
        raise InvalidValue(f"{name} must be a string")
    wanted = kind or FieldKind.SCALAR
    if wanted is not FieldKind.TEXT and kind_of_value(name, value) is not wanted:
        raise InvalidValue(f"{name} holds {wanted} values")


def to_shared(kind: FieldKind, value: JSON) -> Any:
    """The value as stored in the root map: Y.Text, Y.Array or the plain value."""
    if kind is FieldKind.TEXT:
        return Text(str(value))
    return Array(value) if isinstance(value, list) else value


def read_field(root: Map[Any], name: str) -> JSON:
    """The field as plain JSON; a stored value that is not JSON is our own bug."""
    return read_kind_and_field(root, name)[1]


def read_kind_and_field(root: Map[Any], name: str) -> tuple[FieldKind | None, JSON]:
    """Field ``name``'s kind (None when it does not exist) and value, in one lookup."""
    if name not in root:
        return None, None
    shared = root[name]
    if isinstance(shared, Text):
        return FieldKind.TEXT, str(shared)
    kind = FieldKind.LIST if isinstance(shared, Array) else FieldKind.SCALAR
    try:
        return kind, normalise_json(_raw(shared))
    except InvalidValue as exc:
        raise InvalidState(f"{name}: stored value is not JSON: {exc}") from exc


def read_raw(root: Map[Any], name: str) -> object:
    """The value under ``name`` as Python: Y.Text as str, Y.Array as list."""
    return _raw(root[name]) if name in root else None


def _raw(shared: object) -> object:
    if isinstance(shared, Text):
        return str(shared)
    return shared.to_py() if isinstance(shared, Array) else shared


def edit_text(text: Text, old: str, new: str) -> bool:
    """Apply ``old -> new`` to ``text`` (holding ``old``); pycrdt indexes are UTF-8 bytes."""
    ops = diff_ops(old, new)
    for i1, i2, j1, j2 in ops:
        start = len(old[:i1].encode())
        stop = start + len(old[i1:i2].encode())
        if stop > start:
            del text[start:stop]
        if j2 > j1:
            text.insert(start, new[j1:j2])
    return bool(ops)


def edit_list(array: Array[Any], old: list[JSON], new: list[JSON]) -> bool:
    """Apply ``old -> new`` to ``array`` (holding ``old``), item by item."""
    ops = diff_ops([canonical_json(v) for v in old], [canonical_json(v) for v in new])
    for i1, i2, j1, j2 in ops:
        if i2 > i1:
            del array[i1:i2]
        if j2 > j1:
            array[i1:i1] = new[j1:j2]
    return bool(ops)
