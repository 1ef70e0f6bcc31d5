"""The OpenAPI 3.1 document of the REST API, generated from the pydantic models.

Theory of operation
-------------------
Each feature wing lists its HTTP operations as :class:`Operation` values
beside its routes (``OPERATIONS`` in ``api/<wing>/schema.py``): method, path,
the request body model, and per status the response model (or a media type
for a body that is not JSON). :func:`openapi_document` turns them into one
document: path parameters from the ``{name}`` segments, ``Authorization:
Bearer`` where the operation needs a token, and every model's JSON Schema
(pydantic's, 2020-12, OpenAPI 3.1's own dialect) under
``components.schemas``. A test calls every operation on a real server and
validates each answer against this document, so the models stay what the
handlers send.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from tripsage_sync.sync.events import ErrorPayload

__all__ = ["OPENAPI_VERSION", "HttpError", "HttpErrorEvent", "Operation", "openapi_document"]

OPENAPI_VERSION: Final = "3.1.1"
REF_TEMPLATE: Final = "#/components/schemas/{model}"
_PARAM: Final = re.compile(r"{(\w+)}")


class HttpError(BaseModel):
    """A refusal: the error event's code, message and details, flat (trips, dev sign-in)."""

    code: str
    message: str
    details: dict[str, Any] | None = None


class HttpErrorEvent(BaseModel):
    """A refusal: the ``error`` event's payload under ``error`` (chat, broadcast, ops)."""

    error: ErrorPayload


@dataclass(frozen=True, slots=True)
class Operation:
    """One HTTP operation. ``responses``: status -> model, or a media type (str)."""

    method: str
    path: str
    summary: str
    responses: Mapping[int, type[BaseModel] | str]
    body: type[BaseModel] | None = None
    auth: bool = True
    tag: str = "api"
    # Query parameters: name -> (JSON type, description); all optional.
    query: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # Path parameters: name -> the pattern the server holds them to.
    patterns: Mapping[str, str] = field(default_factory=dict)
    # False where an empty body means "all defaults" (POST /api/trips).
    body_required: bool = True

    @property
    def operation_id(self) -> str:
        words = re.sub(r"[{}]", "", self.path).strip("/").replace(".", "_").split("/")
        return self.method.lower() + "".join(w[:1].upper() + w[1:] for w in words if w)


def _string(op: Operation, name: str) -> dict[str, Any]:
    pattern = op.patterns.get(name)
    return {"type": "string", "pattern": pattern} if pattern else {"type": "string"}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def openapi_document(operations: Iterable[Operation], *, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations`` (sorted: the same input, the same bytes)."""
    ops = sorted(operations, key=lambda op: (op.path, op.method))
    inputs: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for op in ops:
        if op.body is not None:
            inputs[(op.body, "validation")] = None
        for answer in op.responses.values():
            if not isinstance(answer, str):
                inputs[(answer, "serialization")] = None
    refs, top = models_json_schema(list(inputs), ref_template=REF_TEMPLATE)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": _string(op, name)}
            for name in _PARAM.findall(op.path)
        ]
        parameters += [
            {"name": name, "in": "query", "description": text, "schema": {"type": kind}}
            for name, (kind, text) in op.query.items()
        ]
        if parameters:
            item["parameters"] = parameters
        if op.auth:
            item["security"] = [{"bearer": []}]
        if op.body is not None:
            item["requestBody"] = {
                "required": op.body_required,
                "content": _content(refs[(op.body, "validation")]),
            }
        responses: dict[str, Any] = {}
        for status, answer in sorted(op.responses.items()):
            text = "OK" if status < 300 else "Refused"
            if isinstance(answer, str):
                schema: dict[str, Any] = {} if answer.endswith("json") else {"type": "string"}
                responses[str(status)] = {
                    "description": text,
                    "content": {answer: {"schema": schema}},
                }
            else:
                description = (answer.__doc__ or text).strip().split("\n\n")[0]
                responses[str(status)] = {
                    "description": " ".join(description.split()),
                    "content": _content(refs[(answer, "serialization")]),
                }
        item["responses"] = responses
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "TripSage Sync REST API",
            "version": version,
            "description": (
                "Generated from the server's pydantic models. The WebSocket protocol is "
                "described by /asyncapi.json."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        # Relative: the server that serves this document (GET /openapi.json).
        "servers": [{"url": "/", "description": "the server serving this document"}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(top.get("$defs", {}).items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
