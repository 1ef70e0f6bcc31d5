"""The rules for trip edits: valid values, stamps, last-write-wins, manual conflicts, diffs.

Theory of operation (``websocket-api.md`` "Real-time Collaboration",
"Optimistic Updates", "Conflict Resolution"). Everything here is pure data
and pure functions, free of pycrdt; :mod:`sync.document` applies the
decisions to the Yjs doc.

Values
    One field-name rule for every protocol (:func:`is_field_name`): an
    identifier of at most 64 characters, ASCII letters, digits and ``_``, not
    starting with a digit or with ``__`` (``__proto__`` is a setter in every
    JavaScript object a client copies ``fields`` into). The JSON API also
    accepts a ``trip.`` path (:func:`parse_field_name`); a Yjs peer writes the
    bare key, and an update that sets any other key is refused. Values are
    JSON of bounded depth and size, finite, with ints within +-(2**53 - 1):
    larger ones lose precision in Yjs' doubles and panic pycrdt. Yjs stores
    every number as a double, so ``3`` is read back as ``3.0``; values are
    normalised on the way in and out: an integral float within that range
    becomes an int. JSON has one number type, so confirming ``2.0`` as ``2``
    loses nothing, and a value read back compares equal to the value written.
    A refused value raises :class:`InvalidValue`, an
    :class:`~sync.errors.InvalidMessage` whose message is safe for the peer.

Stamps (last_write_wins)
    Every write of a scalar field carries a :class:`Stamp`
    ordered by ``(ts_ms, own_ts_ms, user_id, update_id)``: ``ts_ms`` is the
    client's ``clientTimestamp`` clamped to the server's receive time
    (``min(client, received)``); ties go to the later ``own_ts_ms`` (the
    writer's own, unclamped ``clientTimestamp``), then to the greater user
    id, then to the greater update id. A write also *saw* a stamp: the
    field's stamp at the write's base version. :meth:`Stamp.after` bumps a
    write that would sort at or below what it saw to ``seen.ts_ms + 1`` (the
    hybrid-logical-clock rule), so a causally later edit always beats the
    edit it overwrote, even from a client whose clock runs slow; writers the
    bump lifted to one time are still ordered by their own clocks. Server-made
    writes (creation, Yjs peers, resolutions) have ``own_ts_ms == ts_ms``.
    Both inputs are fixed when the update is made, so every write's stamp is
    independent of arrival order, and "apply iff the stamp beats the field's
    current stamp" leaves the write with the greatest stamp in place
    whatever the order.

Manual conflicts
    A :class:`PendingConflict` holds the competing values as options (plus a
    system average for numbers), a deadline and the default option: the one
    last_write_wins would pick, i.e. the greatest stamp. Applying the default
    at the deadline therefore converges to the same value as last_write_wins.
    Pending conflicts round-trip through :meth:`PendingConflict.to_json`.

Diffs (text and list merge)
    :func:`diff_ops` turns ``previousValue -> optimisticValue`` into replace
    operations in base coordinates, returned last-first so applying them in
    order never shifts a later one. Common prefix and suffix are trimmed
    first; a middle larger than :data:`MAX_DIFF_CELLS` is one replacement, so
    the work stays bounded.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import math
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, TypeAlias

from tripsage_sync.sync.errors import InvalidMessage, InvalidState

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
    "PendingConflict",
    "Stamp",
    "canonical_json",
    "conflict_id_for",
    "diff_ops",
    "is_field_name",
    "json_equal",
    "new_pending_conflict",
    "normalise_json",
    "parse_field_name",
    "validate_value",
]

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None

FIELD_PATH_PREFIX: Final = "trip."
FIELD_NAME_PATTERN: Final = re.compile(r"(?!__)[A-Za-z_][A-Za-z0-9_]{0,63}")
FIELD_NAME_RULE: Final = "an identifier of at most 64 characters, not starting with __"
MAX_SAFE_INTEGER: Final = 2**53 - 1  # Number.MAX_SAFE_INTEGER
MAX_VALUE_DEPTH: Final = 16
MAX_VALUE_BYTES: Final = 256 * 1024  # of canonical JSON
AUTO_RESOLVE_AFTER_MS: Final = 30_000  # "Conflict Resolution": autoResolveAfter
MAX_DIFF_CELLS: Final = 4_000_000  # len(a) * len(b) of a trimmed middle before giving up
SYSTEM_OPTION_ID: Final = "option-system"
SYSTEM_SOURCE: Final = "system"


class InvalidValue(InvalidMessage):
    """A field name or value the trip refuses (an optimistic update rolls back)."""


def is_field_name(name: str) -> bool:
    """The field-name rule of both protocols (see "Values"): a bare name, no path."""
    return FIELD_NAME_PATTERN.fullmatch(name) is not None


def parse_field_name(raw: str) -> str:
    """A JSON ``fieldName`` or ``fieldPath`` (``trip.`` optional) as a bare field name."""
    name = raw.removeprefix(FIELD_PATH_PREFIX)
    if not is_field_name(name):
        raise InvalidValue(f"fieldName must be {FIELD_NAME_RULE}")
    return name


def normalise_json(value: object) -> JSON:
    """Checked JSON with integral floats as ints, without the size limit."""
    return _normalise(value, 0)


def validate_value(value: object) -> JSON:
    """A value a peer may write: :func:`normalise_json` within :data:`MAX_VALUE_BYTES`."""
    normalised = _normalise(value, 0)
    if len(canonical_json(normalised).encode()) > MAX_VALUE_BYTES:
        raise InvalidValue(f"values are limited to {MAX_VALUE_BYTES} bytes of JSON")
    return normalised


def _normalise(value: object, depth: int) -> JSON:
    """Checked JSON with integral floats as ints (see "Values" above)."""
    if depth > MAX_VALUE_DEPTH:
        raise InvalidValue(f"values are limited to {MAX_VALUE_DEPTH} levels of nesting")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise InvalidValue("integers must be within +-(2**53 - 1)")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidValue("numbers must be finite")
        return int(value) if value.is_integer() and abs(value) <= MAX_SAFE_INTEGER else value
    if isinstance(value, str):
        return _check_str(value)
    if isinstance(value, list):
        return [_normalise(item, depth + 1) for item in value]
    if isinstance(value, dict):
        out: dict[str, JSON] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidValue("object keys must be strings")
            out[_check_str(key)] = _normalise(item, depth + 1)
        return out
    raise InvalidValue(f"{type(value).__name__} is not a JSON value")


def _check_str(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue("strings must be valid Unicode (no lone surrogates)") from None
    return str(value)


def canonical_json(value: JSON) -> str:
    """One spelling per JSON value: keys sorted, ``true`` distinct from ``1``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def json_equal(a: JSON, b: JSON) -> bool:
    """Equality of normalised JSON values; unlike Python's ``==``, ``true`` is not ``1``."""
    return canonical_json(a) == canonical_json(b)


def conflict_id_for(trip_id: str, update_id: str) -> str:
    """A stable conflict id for the conflict an update triggered."""
    digest = hashlib.blake2b(f"{trip_id}\x1f{update_id}".encode(), digest_size=8).hexdigest()
    return f"conflict-{digest}"


@functools.total_ordering
@dataclass(frozen=True, eq=False)
class Stamp:
    """When and by whom a scalar field was last written; :attr:`key` is the LWW order.

    ``ts_ms`` is the clamped (and causally bumped) time, ``own_ts_ms`` the
    writer's own ``clientTimestamp`` (None: the same as ``ts_ms``, as for
    server-made writes), which orders writes the clamp lifted to one time.
    """

    ts_ms: int
    user_id: str
    update_id: str
    own_ts_ms: int | None = None

    @property
    def key(self) -> tuple[int, int, str, str]:
        own = self.ts_ms if self.own_ts_ms is None else self.own_ts_ms
        return (self.ts_ms, own, self.user_id, self.update_id)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Stamp):
            return NotImplemented
        return self.key < other.key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Stamp):
            return NotImplemented
        return self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def after(self, seen: Stamp | None) -> Stamp:
        """This write's stamp given the stamp it overwrote (see the module docstring)."""
        if seen is None or self > seen:
            return self
        return replace(self, ts_ms=seen.ts_ms + 1, own_ts_ms=self.key[1])

    def to_json(self) -> list[JSON]:
        base: list[JSON] = [self.ts_ms, self.user_id, self.update_id]
        own = self.key[1]
        return base if own == self.ts_ms else [*base, own]

    @classmethod
    def from_json(cls, data: Any) -> Stamp:
        """``[ts, user, update]`` or ``[ts, user, update, own_ts]``."""
        if not (isinstance(data, list) and len(data) in (3, 4)):
            raise InvalidState(f"malformed stamp: {data!r}")
        ts, user, update, *rest = data
        own = rest[0] if rest else None
        for number in (ts, own):
            if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
                raise InvalidState(f"malformed stamp: {data!r}")
        if not (isinstance(user, str) and isinstance(update, str)):
            raise InvalidState(f"malformed stamp: {data!r}")
        return cls(ts, user, update, own)


@dataclass(frozen=True)
class ConflictingValue:
    user_id: str
    value: JSON
    timestamp_ms: int


@dataclass(frozen=True)
class ConflictDetected:
    """``trip_conflict_detected`` for all collaborators (winner is None when manual)."""

    conflict_id: str
    field_name: str
    conflicting_values: tuple[ConflictingValue, ...]
    resolution_strategy: Literal["last_write_wins", "manual"]
    winning_value: JSON
    winning_user_id: str | None
    conflict_type: Literal["concurrent_edit"] = "concurrent_edit"


@dataclass(frozen=True)
class ConflictOption:
    """One choice of ``conflict_resolution_required``; ``stamp`` is None for the system one."""

    option_id: str
    value: JSON
    source: str
    timestamp_ms: int
    description: str
    stamp: Stamp | None

    def to_json(self) -> dict[str, JSON]:
        return {
            "id": self.option_id,
            "value": self.value,
            "source": self.source,
            "timestamp": self.timestamp_ms,
            "description": self.description,
            "stamp": None if self.stamp is None else self.stamp.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> ConflictOption:
        try:
            stamp = data["stamp"]
            return cls(
                option_id=_str(data["id"]),
                value=data["value"],
                source=_str(data["source"]),
                timestamp_ms=_int(data["timestamp"]),
                description=_str(data["description"]),
                stamp=None if stamp is None else Stamp.from_json(stamp),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidState(f"malformed conflict option: {exc}") from exc


@dataclass(frozen=True)
class PendingConflict:
    """A manual conflict waiting for ``conflict_resolution_submit`` or its deadline."""

    conflict_id: str
    trip_id: str
    field_name: str
    options: tuple[ConflictOption, ...]
    default_option_id: str
    deadline_ms: int
    auto_resolve_after_ms: int = AUTO_RESOLVE_AFTER_MS

    def option(self, option_id: str) -> ConflictOption | None:
        return next((o for o in self.options if o.option_id == option_id), None)

    @property
    def default_option(self) -> ConflictOption:
        option = self.option(self.default_option_id)
        if option is None:
            raise InvalidState(f"{self.conflict_id}: default option missing")
        return option

    def max_stamp(self) -> Stamp:
        stamps = [o.stamp for o in self.options if o.stamp is not None]
        if not stamps:
            raise InvalidState(f"{self.conflict_id}: no stamped option")
        return max(stamps)

    def with_value(self, value: JSON, stamp: Stamp) -> PendingConflict:
        """Join another proposed value; the default is recomputed by last_write_wins."""
        proposals = [(o.value, o.stamp) for o in self.options if o.stamp is not None]
        return _build(self, [*proposals, (value, stamp)])

    def to_json(self) -> dict[str, JSON]:
        return {
            "conflictId": self.conflict_id,
            "tripId": self.trip_id,
            "fieldName": self.field_name,
            "options": [o.to_json() for o in self.options],
            "autoResolveAfter": self.auto_resolve_after_ms,
            "defaultOption": self.default_option_id,
            "deadlineMs": self.deadline_ms,
        }

    @classmethod
    def from_json(cls, data: Any) -> PendingConflict:
        try:
            conflict = cls(
                conflict_id=_str(data["conflictId"]),
                trip_id=_str(data["tripId"]),
                field_name=_str(data["fieldName"]),
                options=tuple(ConflictOption.from_json(o) for o in data["options"]),
                default_option_id=_str(data["defaultOption"]),
                deadline_ms=_int(data["deadlineMs"]),
                auto_resolve_after_ms=_int(data["autoResolveAfter"]),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidState(f"malformed pending conflict: {exc}") from exc
        conflict.default_option  # noqa: B018  # validates the default option id
        return conflict


def new_pending_conflict(
    *,
    conflict_id: str,
    trip_id: str,
    field_name: str,
    current: tuple[JSON, Stamp],
    incoming: tuple[JSON, Stamp],
    deadline_ms: int,
    auto_resolve_after_ms: int = AUTO_RESOLVE_AFTER_MS,
) -> PendingConflict:
    """The conflict between the field's current value and an incoming concurrent one."""
    seed = PendingConflict(
        conflict_id=conflict_id,
        trip_id=trip_id,
        field_name=field_name,
        options=(),
        default_option_id="",
        deadline_ms=deadline_ms,
        auto_resolve_after_ms=auto_resolve_after_ms,
    )
    return _build(seed, [current, incoming])


def _build(seed: PendingConflict, proposals: list[tuple[JSON, Stamp]]) -> PendingConflict:
    options = [
        ConflictOption(
            option_id=f"option-{i}",
            value=value,
            source=stamp.user_id,
            timestamp_ms=stamp.ts_ms,
            description="Current value" if i == 1 else "Concurrent edit",
            stamp=stamp,
        )
        for i, (value, stamp) in enumerate(proposals, start=1)
    ]
    default = options[max(range(len(proposals)), key=lambda i: proposals[i][1])]
    numbers = [o.value for o in options]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
        mean = sum(v for v in numbers if isinstance(v, int | float)) / len(numbers)
        options.append(
            ConflictOption(
                option_id=SYSTEM_OPTION_ID,
                value=int(mean) if mean.is_integer() else mean,
                source=SYSTEM_SOURCE,
                timestamp_ms=max(o.timestamp_ms for o in options),
                description="Suggested average value",
                stamp=None,
            )
        )
    return replace(seed, options=tuple(options), default_option_id=default.option_id)


def diff_ops(old: Sequence[Hashable], new: Sequence[Hashable]) -> list[tuple[int, int, int, int]]:
    """Replace ops ``old[i1:i2] -> new[j1:j2]``, last first, that turn ``old`` into ``new``."""
    prefix = 0
    limit = min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    a, b = old[prefix : len(old) - suffix], new[prefix : len(new) - suffix]
    if not a and not b:
        return []
    if not a or not b or len(a) * len(b) > MAX_DIFF_CELLS:
        ops = [(0, len(a), 0, len(b))]
    else:
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        ops = [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]
    return [
        (i1 + prefix, i2 + prefix, j1 + prefix, j2 + prefix) for i1, i2, j1, j2 in reversed(ops)
    ]


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value
