"""Parsing client frames into validated messages, with errors that say what was wrong.

Client frames are parsed in two steps. :func:`parse_auth_request` reads the
first frame of a connection ("Authentication Request"). Every later frame is
read by :func:`parse_client_message`, which validates the envelope of "Base
Message Structure" and the payload of its ``type`` in one pass
(:mod:`sync.wire.envelope`), so an invalid message cannot be constructed. A
failure is turned into :class:`~sync.errors.InvalidMessage` whose
``details`` name the field, the expected type and what was received (the
spec's ``error`` event), and the message's ``id`` as ``messageId`` when it
has one. The items of a ``batch`` are any JSON values, each judged by
:func:`parse_client_value` as if it had come alone. A string that is not
valid Unicode (a lone surrogate) is refused at any depth, so no later step
meets one. An ``optimistic_update_start`` with a usable ``updateId`` fails
as :class:`~sync.wire.refusal.InvalidUpdate`, which carries its outcome.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from tripsage_sync.sync.errors import InvalidMessage
from tripsage_sync.sync.wire.base import MAX_ID_CHARS
from tripsage_sync.sync.wire.envelope import MESSAGE_MODELS, ClientMessage
from tripsage_sync.sync.wire.payload import AuthRequest
from tripsage_sync.sync.wire.refusal import InvalidUpdate

__all__ = ["message_id_of", "parse_auth_request", "parse_client_message", "parse_client_value"]


_JSON_TYPE_NAMES: Final = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}

_EXPECTED_BY_ERROR: Final = {
    "string_type": "string",
    "string_too_long": "shorter string",
    "string_too_short": "non-empty string",
    "int_type": "integer",
    "int_parsing": "integer",
    "int_from_float": "integer",
    "float_type": "number",
    "float_parsing": "number",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "list_type": "array",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
    "greater_than_equal": "larger number",
    "less_than_equal": "smaller number",
    "too_long": "fewer items",
    "literal_error": "one of the allowed values",
    "missing": "a value",
    "extra_forbidden": "no such field",
}


def _describe(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


# A JSON escape of a UTF-16 surrogate: the only way a lone surrogate gets into a parsed str
# (json.loads joins a valid pair into one code point; UTF-8 frames cannot carry one).
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES: Final = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _lone_surrogate_at(value: Any, path: str = "") -> str | None:
    """The path of the first string (value or key, any depth) holding a lone surrogate."""
    if isinstance(value, str):
        return path if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if _SURROGATE.search(key):
                return path or "(key)"
            found = _lone_surrogate_at(item, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate_at(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def _loads(text: str | bytes) -> Any:
    """Parse a frame; a string that is not valid Unicode (a lone surrogate) is refused here,
    at any depth, so no later step (storage, fan-out, the writer's UTF-8 encode) meets one."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage(
            "Message is not valid JSON",
            details={"field": "", "expected": "JSON object", "received": "invalid JSON"},
        ) from exc
    suspect = (
        _SURROGATE_ESCAPE_BYTES.search(text)
        if isinstance(text, bytes)
        else _SURROGATE_ESCAPE.search(text) or _SURROGATE.search(text)
    )
    if suspect is not None:
        try:
            field = _lone_surrogate_at(data)
        except RecursionError:
            field = ""
        if field is not None:
            raise InvalidMessage(
                "Message contains a string that is not valid Unicode (a lone surrogate)",
                details={
                    "field": field[:128],
                    "expected": "valid Unicode string",
                    "received": "lone surrogate",
                },
            )
    return data


def _annotation_name(annotation: Any) -> str | None:
    origin = getattr(annotation, "__origin__", None)
    for candidate in (annotation, origin):
        if candidate in _JSON_TYPE_NAMES:
            return _JSON_TYPE_NAMES[candidate]
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return "object"
    return None


def _expected_type(model: type[BaseModel], loc: list[str]) -> str | None:
    """The JSON type name of the field at ``loc`` in ``model``, if simple."""
    current: Any = model
    annotation: Any = None
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        annotation = current = field.annotation
    return _annotation_name(annotation)


def _invalid(exc: ValidationError, model: type[BaseModel]) -> InvalidMessage:
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"]]
    field = ".".join(loc)
    kind = error["type"]
    received: Any = "undefined" if kind == "missing" else _describe(error.get("input"))
    if kind == "literal_error" and isinstance(error.get("input"), str):
        received = error["input"][:64]
    expected = _EXPECTED_BY_ERROR.get(kind, kind)
    if kind == "missing":
        expected = _expected_type(model, loc) or expected
    ctx = error.get("ctx") or {}
    if kind == "literal_error" and "expected" in ctx:
        expected = str(ctx["expected"])
    message = f"Invalid field '{field}': {error['msg']}" if field else error["msg"]
    return InvalidMessage(
        message,
        details={"field": field, "expected": expected, "received": received},
    )


def parse_auth_request(text: str | bytes) -> AuthRequest:
    """The first frame of a connection; raises :class:`InvalidMessage`."""
    data = _loads(text)
    if not isinstance(data, dict):
        raise InvalidMessage(
            "Authentication request must be a JSON object",
            details={"field": "", "expected": "object", "received": _describe(data)},
        )
    try:
        return AuthRequest.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc, AuthRequest) from None


def message_id_of(value: Any) -> str | None:
    """The ``id`` of a decoded client message, when it has a usable one.

    Used to say which message an error answers (``details.messageId``); an id
    that could not be sent back (too long, not a string, not encodable) is none.
    """
    message_id = value.get("id") if isinstance(value, dict) else None
    if not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_ID_CHARS:
        return None
    try:
        message_id.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return message_id


def parse_client_message(data: str | bytes | dict[str, Any]) -> ClientMessage:
    """Validate a client message (a text frame, or a decoded object)."""
    return parse_client_value(_loads(data) if isinstance(data, str | bytes) else data)


def parse_client_value(value: Any) -> ClientMessage:
    """Validate a decoded JSON value as a client message (e.g. an item of a batch).

    The error of a message that has an id names it (``details.messageId``).
    """
    try:
        return _parse_value(value)
    except InvalidMessage as exc:
        message_id = message_id_of(value)
        if message_id is not None:
            exc.details = {**(exc.details or {}), "messageId": message_id}
        raise


def _parse_value(data: Any) -> ClientMessage:
    if not isinstance(data, dict):
        raise InvalidMessage(
            "Message must be a JSON object",
            details={"field": "", "expected": "object", "received": _describe(data)},
        )
    type_ = data.get("type")
    if not isinstance(type_, str):
        raise InvalidMessage(
            "Message has no 'type'" if type_ is None else "Field 'type' must be a string",
            details={
                "field": "type",
                "expected": "string",
                "received": "undefined" if type_ is None else _describe(type_),
            },
        )
    model = MESSAGE_MODELS.get(type_)
    if model is None:
        raise InvalidMessage(
            f"Unknown message type '{type_[:64]}'",
            details={"field": "type", "expected": "a known event type", "received": type_[:64]},
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        invalid = _invalid(exc, model)
        if type_ == "optimistic_update_start":
            refused = InvalidUpdate.of(data.get("payload"), invalid)
            if refused is not None:
                raise refused from None
        raise invalid from None
