"""Values: the field-name rule, JSON validation and normalisation, canonical JSON.

One field-name rule for every protocol (:func:`is_field_name`): 1 to 64
characters from ASCII letters, digits and ``_ . : @ # -`` (keys such as
``day-1``, ``hotel:paris`` or ``v1.2``), not starting with ``__``
(``__proto__`` is a setter in every JavaScript object a client copies
``fields`` into) nor with the path prefix ``trip.`` (the JSON API also
accepts a ``trip.`` path, :func:`parse_field_name`, so such a key could not
be named unambiguously). No whitespace, quotes, markup or path separators
(``../`` is refused). A Yjs peer writes the bare key, and an update that
sets any other key is refused. Values are
JSON of bounded depth and size, finite, with ints within +-(2**53 - 1):
larger ones lose precision in Yjs' doubles and panic pycrdt. Yjs stores
every number as a double, so ``3`` is read back as ``3.0``; values are
normalised on the way in and out: an integral float within that range
becomes an int. JSON has one number type, so confirming ``2.0`` as ``2``
loses nothing, and a value read back compares equal to the value written.
A refused value raises :class:`InvalidValue`, an
:class:`~sync.errors.InvalidMessage` whose message is safe for the peer.
"""

from __future__ import annotations

import json
import math
import re
from typing import Final, TypeAlias

import orjson

from tripsage_sync.sync.errors import InvalidMessage

__all__ = [
    "FIELD_NAME_PATTERN",
    "FIELD_NAME_RULE",
    "FIELD_PATH_PREFIX",
    "JSON",
    "MAX_SAFE_INTEGER",
    "MAX_VALUE_BYTES",
    "MAX_VALUE_DEPTH",
    "InvalidValue",
    "canonical_json",
    "is_field_name",
    "json_equal",
    "normalise_json",
    "parse_field_name",
    "validate_value",
]

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None

FIELD_PATH_PREFIX: Final = "trip."
FIELD_NAME_PATTERN: Final = re.compile(r"(?!__|trip\.)[A-Za-z0-9_.:@#-]{1,64}")
FIELD_NAME_RULE: Final = "1-64 of [A-Za-z0-9_.:@#-], not starting with __ or trip."
MAX_SAFE_INTEGER: Final = 2**53 - 1  # Number.MAX_SAFE_INTEGER
MAX_VALUE_DEPTH: Final = 16
MAX_VALUE_BYTES: Final = 256 * 1024  # of canonical JSON


class InvalidValue(InvalidMessage):
    """A field name or value the trip refuses (an optimistic update rolls back)."""


def is_field_name(name: str) -> bool:
    """The field-name rule of both protocols (see "Values"): a bare name, no path."""
    return FIELD_NAME_PATTERN.fullmatch(name) is not None


def parse_field_name(raw: str) -> str:
    """A JSON ``fieldName`` or ``fieldPath`` (``trip.`` optional) as a bare field name.

    A path names a top-level field: ``trip.a.b`` is refused (fields do not
    nest), while a key with a dot in it is named bare (``v1.2``).
    """
    name = raw.removeprefix(FIELD_PATH_PREFIX)
    if not is_field_name(name):
        raise InvalidValue(f"fieldName must be {FIELD_NAME_RULE}")
    if raw.startswith(FIELD_PATH_PREFIX) and "." in name:
        raise InvalidValue("fieldPath names a top-level field: trip.<name>, no nesting")
    return name


def normalise_json(value: object) -> JSON:
    """Checked JSON with integral floats as ints, without the size limit."""
    return _normalise(value, 0)


def validate_value(value: object) -> JSON:
    """A value a peer may write: :func:`normalise_json` within :data:`MAX_VALUE_BYTES`."""
    normalised = _normalise(value, 0)
    # The limit counts JSON with non-ASCII characters escaped (at most 3 bytes of it
    # per byte of UTF-8): spelled so only when the UTF-8 spelling may be over a third.
    if (
        len(_canonical_bytes(normalised)) * 3 > MAX_VALUE_BYTES
        and len(_escaped(normalised)) > MAX_VALUE_BYTES
    ):
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
    """One spelling per JSON value: keys sorted, ``true`` distinct from ``1``.

    Compared only with other spellings of this process (never stored): orjson
    writes it, ``json.dumps`` what orjson refuses (an int over 64 bits).
    """
    return _canonical_bytes(value).decode()


def _canonical_bytes(value: JSON) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return _escaped(value).encode()


def _escaped(value: JSON) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def json_equal(a: JSON, b: JSON) -> bool:
    """Equality of normalised JSON values; unlike Python's ``==``, ``true`` is not ``1``."""
    return canonical_json(a) == canonical_json(b)
