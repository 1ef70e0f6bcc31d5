"""Validators for docs/asyncapi.json and docs/openapi.json (the committed protocol).

Both documents keep their schemas under ``components.schemas`` with
``#/components/schemas/...`` references (JSON Schema 2020-12), so one
registry per document resolves them.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any, Final

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT: Final = Path(__file__).resolve().parent.parent
DOCS: Final = ROOT / "docs"


@cache
def document(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DOCS / name).read_text(encoding="utf-8"))
    return data


@cache
def _registry(name: str) -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(
        document(name), default_specification=DRAFT202012
    )
    registry: Registry[Any] = Registry().with_resource(f"urn:{name}", resource)
    return registry


def _validator(name: str, schema: dict[str, Any]) -> Draft202012Validator:
    if "$ref" in schema:
        schema = {"$ref": f"urn:{name}{schema['$ref']}"}
    return Draft202012Validator(schema, registry=_registry(name))


def errors(validator: Draft202012Validator, value: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message[:200]}"
        for e in validator.iter_errors(value)
    ]


def message_keys(message_type: str) -> list[str]:
    """The AsyncAPI message keys (``client.X``, ``server.X``, ...) named ``message_type``."""
    messages = document("asyncapi.json")["components"]["messages"]
    return [key for key, m in messages.items() if m["name"] == message_type]


def message_errors(key: str, value: Any) -> list[str]:
    """Why ``value`` is not the AsyncAPI message ``key`` (empty: it is)."""
    payload = document("asyncapi.json")["components"]["messages"][key]["payload"]
    return errors(_validator("asyncapi.json", payload), value)


def server_frame_errors(frame: dict[str, Any]) -> list[str]:
    """Why a frame the server sent is not one of the server messages of its type."""
    if "success" in frame and "type" not in frame:
        return message_errors("auth_response", frame)
    key = f"server.{frame.get('type')}"
    if key not in document("asyncapi.json")["components"]["messages"]:
        return [f"no server message {key!r} in docs/asyncapi.json"]
    return message_errors(key, frame)


def path_template(path: str) -> str:
    """``/api/trips/{tripId}`` as ``/api/trips/{}``: paths compared whatever their names."""
    return re.sub(r"{[^}]+}", "{}", path)


def response_errors(method: str, path: str, status: int, body: Any) -> list[str]:
    """Why ``body`` is not the documented answer of ``method path`` with ``status``.

    ``path`` is a template (``/api/trips/{tripId}``); any parameter names match."""
    for documented, item in document("openapi.json")["paths"].items():
        if path_template(documented) == path_template(path) and method.lower() in item:
            responses = item[method.lower()]["responses"]
            if str(status) not in responses:
                return [f"{method} {path}: status {status} is not documented"]
            schema = responses[str(status)]["content"]["application/json"]["schema"]
            return errors(_validator("openapi.json", schema), body)
    return [f"{method} {path} is not in docs/openapi.json"]


def json_examples(markdown: str) -> list[tuple[int, Any]]:
    """Every ```json block of a markdown text that parses: (line, value)."""
    found = []
    for match in re.finditer(r"```json\n(.*?)```", markdown, re.S):
        try:
            value = json.loads(match.group(1))
        except ValueError:
            continue  # a shape with comments ("Base Message Structure"), not a message
        found.append((markdown.count("\n", 0, match.start()) + 1, value))
    return found
