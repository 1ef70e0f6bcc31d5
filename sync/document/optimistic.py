"""Deciding an optimistic update ("Optimistic Updates", "Conflict Resolution").

Applying an update made at ``expectedVersion`` E
    * text and list fields: ``previousValue -> optimisticValue`` is diffed
      into inserts and deletes applied in a fork at E
      (:meth:`~sync.document.state.DocState.fork`), so edits of different
      parts merge (:mod:`sync.document.schema`).
    * scalars: last_write_wins or manual conflicts, per :mod:`sync.conflicts`.
      An update is concurrent when the field changed after E. A concurrent
      write of the value the field already holds is not a conflict.

Bases (which version an update is decided at)
    Version 0 means no base is known (a client that never saw the trip, or
    sent no ``expectedVersion`` and saw nothing): the update is taken as made
    at the creation, concurrent with every later change, and a null
    ``previousValue`` says nothing. Below the retained history (after
    :func:`sync.document.history.compact`) the base snapshot stands in for
    E, exactly so when the field did not change in between. Otherwise the
    value at E is unknown: a scalar is still decided, concurrent, against the
    current stamp alone (no causal bump, previousValue unchecked); a text or
    list edit is merged where its ``previousValue`` is the field at the base
    snapshot or now, and rolled back (``history_unavailable``) where it cannot
    be placed. A text or list edit made at version 0 diffs from the creation
    value (or from its ``previousValue`` where that is the value at creation
    or now).

Exactly one outcome per update (:mod:`sync.document.results`). Nothing is
applied unless Confirmed, and validation happens before any Yjs call, so no
input reaches a pycrdt panic.
"""

from __future__ import annotations

from pycrdt import Array, Map, Text

from tripsage_sync.sync.conflicts import (
    JSON,
    ConflictDetected,
    ConflictingValue,
    InvalidValue,
    Stamp,
    conflict_id_for,
    json_equal,
    parse_field_name,
    validate_value,
)
from tripsage_sync.sync.document.conflict import ManualConflicts
from tripsage_sync.sync.document.outcome import (
    confirmed,
    refuse,
    rejected,
    rollback,
    stale,
    too_old,
)
from tripsage_sync.sync.document.results import ApplyResult, UpdateRequest
from tripsage_sync.sync.document.schema import (
    ROOT_MAP,
    TEXT_FIELDS,
    FieldKind,
    check_kind,
    edit_list,
    edit_text,
    read_field,
)
from tripsage_sync.sync.document.state import DocState
from tripsage_sync.sync.errors import InvalidState

__all__ = ["apply_optimistic", "base_of"]


def apply_optimistic(
    state: DocState, conflicts: ManualConflicts, req: UpdateRequest
) -> ApplyResult:
    """Decide ``optimistic_update_start``: exactly one outcome for the sender."""
    try:
        name = parse_field_name(req.field_name)
    except InvalidValue as exc:
        return refuse(state, req, req.field_name, "payload.fieldName", exc)
    kind = state.kind(name)
    try:
        previous = validate_value(req.previous_value) if req.has_previous_value else None
    except InvalidValue as exc:
        return refuse(state, req, name, "payload.previousValue", exc)
    try:
        value = validate_value(req.optimistic_value)
        if kind is None and (name in TEXT_FIELDS or isinstance(value, list)):
            raise InvalidValue(f"{name}: text and list fields are declared at creation")
        check_kind(name, kind, value)
    except InvalidValue as exc:
        return refuse(state, req, name, "payload.optimisticValue", exc)
    if not 0 <= req.expected_version <= state.version:
        message = (
            "it was based on a newer copy of the trip than the server has."
            " Reload the trip and make the change again."
        )
        return rollback(state, req, name, "invalid_expected_version", message, False)
    # With no base known (version 0), a null previousValue says nothing.
    known = req.has_previous_value and not (req.expected_version == 0 and previous is None)
    if kind is FieldKind.TEXT or kind is FieldKind.LIST:
        return _merge(state, req, name, value, previous if known else None, known)
    return _write_scalar(state, conflicts, req, name, value, previous, known)


def base_of(state: DocState, name: str, expected_version: int) -> tuple[int, bool]:
    """Where an update made at ``expected_version`` is decided ("Bases" above).

    Returns the version and whether ``name`` there is exactly as it was at
    the update's base. Version 0 (no base known) is taken as the creation,
    version 1. Below the retained history the base snapshot stands in: exact
    when the field did not change in between.
    """
    version = max(expected_version, 1)
    if version >= state.base.version:
        return version, True
    history = state.history.get(name, [])
    return state.base.version, not history or history[0][0] <= version


def _merge(
    state: DocState, req: UpdateRequest, name: str, value: JSON, previous: JSON, known: bool
) -> ApplyResult:
    at, exact = base_of(state, name, req.expected_version)
    unknown = req.expected_version == 0
    if exact and not unknown:
        tries = [at]  # previousValue, if sent, must be the value at the base
    elif exact:
        tries = [at, state.version]  # the creation, else the text as it is now
    else:
        tries = [at, state.version] if known else []
    for version in dict.fromkeys(tries):
        fork = state.fork(version, "u:" + req.update_id)
        root, before = fork.get(ROOT_MAP, type=Map), fork.get_state()
        base_value = read_field(root, name)
        if known and not json_equal(previous, base_value):
            continue
        shared = root[name]
        if isinstance(shared, Text) and isinstance(base_value, str) and isinstance(value, str):
            changed = edit_text(shared, base_value, value)
        elif isinstance(shared, Array) and isinstance(base_value, list) and isinstance(value, list):
            changed = edit_list(shared, base_value, value)
        else:
            raise InvalidState(f"{name}: kind changed between versions")
        if not changed:  # optimisticValue == previousValue: nothing to apply
            return ApplyResult(confirmed(state, req, name))
        change = state.record(fork, before, req.user_id, req.update_id, "update", {name: None})
        return ApplyResult(confirmed(state, req, name), change)
    if exact:
        return stale(state, req, name)
    return too_old(state, req, name)


def _write_scalar(
    state: DocState,
    conflicts: ManualConflicts,
    req: UpdateRequest,
    name: str,
    value: JSON,
    previous: JSON,
    known: bool,
) -> ApplyResult:
    at, exact = base_of(state, name, req.expected_version)
    history = state.history.get(name, [])
    concurrent = not exact or (bool(history) and history[-1][0] > at)
    # previousValue is checked where the value at the base is known.
    if known and exact and req.expected_version != 0:
        base = state.value_at(at, name) if concurrent else state.value(name)
        if not json_equal(previous, base):
            return stale(state, req, name)
    clamped_ms = min(req.client_ts_ms, req.received_ts_ms)
    seen = state.stamp_at(name, at) if exact else None
    stamp = Stamp(clamped_ms, req.user_id, req.update_id, req.client_ts_ms).after(seen)
    pending = conflicts.open_on(name)
    if pending is not None:  # "Conflict Resolution": the value joins the open conflict
        joined = conflicts.join(pending, value, stamp)
        outcome = rejected(state, req, name, "merge_required", joined.conflict_id)
        return ApplyResult(outcome, conflict_raised=joined)
    if not concurrent:
        change = state.write(name, value, stamp, req.user_id, req.update_id, "update")
        return ApplyResult(confirmed(state, req, name), change)
    current, current_value = state.current_stamp(name), state.value(name)
    if json_equal(value, current_value):  # concurrent but in agreement: no conflict
        if stamp < current:
            return ApplyResult(confirmed(state, req, name))
        change = state.write(name, value, stamp, req.user_id, req.update_id, "update")
        return ApplyResult(confirmed(state, req, name), change)
    conflict_id = conflict_id_for(state.trip_id, req.update_id)
    values = (
        ConflictingValue(current.user_id, current_value, current.ts_ms),
        ConflictingValue(req.user_id, value, stamp.ts_ms),
    )
    if name in conflicts.manual_fields:
        conflict = conflicts.open(
            conflict_id, name, (current_value, current), (value, stamp), req.received_ts_ms
        )
        detected = ConflictDetected(conflict_id, name, values, "manual", None, None)
        outcome = rejected(state, req, name, "merge_required", conflict_id)
        return ApplyResult(outcome, None, detected, conflict)
    if stamp > current:  # last_write_wins: the incoming write is the later one
        change = state.write(name, value, stamp, req.user_id, req.update_id, "update")
        detected = ConflictDetected(
            conflict_id, name, values, "last_write_wins", value, req.user_id
        )
        return ApplyResult(confirmed(state, req, name), change, detected)
    detected = ConflictDetected(
        conflict_id, name, values, "last_write_wins", current_value, current.user_id
    )
    outcome = rejected(state, req, name, "accept_server_value", None)
    return ApplyResult(outcome, conflict_detected=detected)
