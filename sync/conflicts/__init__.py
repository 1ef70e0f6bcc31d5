"""The rules for trip edits: valid values, stamps, last-write-wins, manual conflicts, diffs.

Theory of operation (``websocket-api.md`` "Real-time Collaboration",
"Optimistic Updates", "Conflict Resolution"). Everything here is pure data
and pure functions, free of pycrdt; :mod:`sync.document` applies the
decisions to the Yjs doc. One module a rule, each with its theory:

* :mod:`.value`: the field-name rule, JSON validation and normalisation;
* :mod:`.stamp`: the last_write_wins order of scalar writes;
* :mod:`.manual`: detected and pending manual conflicts and their options;
* :mod:`.diff`: the bounded diff behind the text and list merge.

Callers import from here: ``from sync.conflicts import Stamp, ...``.
"""

from __future__ import annotations

from tripsage_sync.sync.conflicts.diff import MAX_DIFF_CELLS, diff_ops
from tripsage_sync.sync.conflicts.manual import (
    AUTO_RESOLVE_AFTER_MS,
    SYSTEM_OPTION_ID,
    SYSTEM_SOURCE,
    ConflictDetected,
    ConflictingValue,
    ConflictOption,
    PendingConflict,
    conflict_id_for,
    new_pending_conflict,
)
from tripsage_sync.sync.conflicts.stamp import PackedStamp, Stamp, pack_stamp, unpack_stamp
from tripsage_sync.sync.conflicts.value import (
    FIELD_NAME_PATTERN,
    FIELD_NAME_RULE,
    FIELD_PATH_PREFIX,
    JSON,
    MAX_SAFE_INTEGER,
    MAX_VALUE_BYTES,
    MAX_VALUE_DEPTH,
    InvalidValue,
    canonical_json,
    is_field_name,
    json_equal,
    normalise_json,
    parse_field_name,
    validate_value,
)

__all__ = [
    "AUTO_RESOLVE_AFTER_MS",
    "FIELD_NAME_PATTERN",
    "FIELD_NAME_RULE",
    "FIELD_PATH_PREFIX",
    "JSON",
    "MAX_DIFF_CELLS",
    "MAX_SAFE_INTEGER",
    "MAX_VALUE_BYTES",
    "MAX_VALUE_DEPTH",
    "SYSTEM_OPTION_ID",
    "SYSTEM_SOURCE",
    "ConflictDetected",
    "ConflictOption",
    "ConflictingValue",
    "InvalidValue",
    "PackedStamp",
    "PendingConflict",
    "Stamp",
    "canonical_json",
    "conflict_id_for",
    "diff_ops",
    "is_field_name",
    "json_equal",
    "new_pending_conflict",
    "normalise_json",
    "pack_stamp",
    "parse_field_name",
    "unpack_stamp",
    "validate_value",
]
