"""The published protocol (issue 14 part 1): docs/asyncapi.json and docs/openapi.json.

Both are generated from the models (``tripsage-sync schema``); the committed
copies must be current, pass the official parsers (npm ``@asyncapi/parser``,
``@apidevtools/swagger-parser``), list every message, event, error code, close
code and HTTP route the server has, and accept every example event of the
protocol document, but for the differences the README lists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest
from starlette.routing import Mount, Route

from tests.protocol import (
    DOCS,
    ROOT,
    document,
    json_examples,
    message_errors,
    message_keys,
    path_template,
)
from tripsage_sync.api.app import create_app
from tripsage_sync.api.cli import main
from tripsage_sync.api.protocol import DOCUMENTS, document_text
from tripsage_sync.api.settings import Settings
from tripsage_sync.sync import errors
from tripsage_sync.sync.protocol import CLOSE_CODES, ERROR_CODES
from tripsage_sync.sync.wire import EVENT_PAYLOADS, MESSAGE_MODELS
from tripsage_sync.sync.ysync import YJS_CLOSE_CODES

NODE_DIR: Final = ROOT / "tests" / "node"

# websocket-api.md examples the schemas refuse, each for the reason the README gives
# ("Where the server and the protocol document differ"): the server sends more.
DIFFERENCES_HEADING: Final = "### Where the server and the protocol document differ"
KNOWN_DIFFERENCES: Final = {
    "connection_established": "limits carries every limit the server enforces",
    "collaboration_session_started": "the answer also carries the fields, version, permission",
    "optimistic_update_rejected": "every rejection has a message for people",
    "optimistic_update_rollback": "every rollback has a message for people",
    "conflict_resolution_required": "a manual conflict has a deadline (resolveBy)",
    "subscription_update": "every event has an id and a timestamp",
    "error": "every event has an id and a timestamp",
}


def test_the_committed_documents_are_what_the_models_generate(tmp_path: Path) -> None:
    for name in DOCUMENTS:
        assert (DOCS / name).read_text(encoding="utf-8") == document_text(name), (
            f"docs/{name} is stale: run `tripsage-sync schema` and commit it"
        )
    assert main(["schema", "--check", "--out", str(DOCS)]) == 0
    # A stale copy fails the check, naming the file and the fix.
    for name in DOCUMENTS:
        shutil.copy(DOCS / name, tmp_path / name)
    (tmp_path / "openapi.json").write_text("{}\n", encoding="utf-8")
    assert main(["schema", "--check", "--out", str(tmp_path)]) == 1
    assert main(["schema", "--out", str(tmp_path)]) == 0
    assert main(["schema", "--check", "--out", str(tmp_path)]) == 0


def test_the_documents_pass_the_official_parsers() -> None:
    if not (NODE_DIR / "node_modules" / "@asyncapi" / "parser").is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but tests/node has no node_modules (.ci/run runs npm ci)")
        pytest.skip("run `npm ci` in tests/node")
    result = subprocess.run(
        ["node", "validate-schemas.mjs", str(DOCS / "asyncapi.json"), str(DOCS / "openapi.json")],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "asyncapi ok" in result.stdout, result.stdout
    assert "openapi ok" in result.stdout, result.stdout


def test_asyncapi_lists_every_message_event_error_and_close_code() -> None:
    asyncapi = document("asyncapi.json")
    assert asyncapi["asyncapi"].startswith("3.")
    messages = asyncapi["components"]["messages"]
    client = {m["name"] for key, m in messages.items() if key.startswith("client.")}
    server = {m["name"] for key, m in messages.items() if key.startswith("server.")}
    assert client == set(MESSAGE_MODELS)
    assert server == set(EVENT_PAYLOADS) | {"batch"}
    assert {"auth", "auth_response", "yjs.frame"} <= set(messages)
    channels = asyncapi["channels"]
    assert channels["chat"]["address"] == "/ws/chat/{sessionId}"
    assert channels["agentStatus"]["address"] == "/ws/agent-status/{sessionId}"
    assert channels["yjs"]["address"] == "/ws/yjs/{tripId}"
    schemas = asyncapi["components"]["schemas"]
    codes = {item["const"] for item in schemas["ErrorCode"]["oneOf"]}
    raised = {cls.code for cls in _subclasses(errors.SyncError)}
    raised |= {"INVALID_TOKEN", "TOKEN_EXPIRED"}
    assert raised <= codes == set(ERROR_CODES)
    closes = {item["const"] for item in schemas["CloseCode"]["oneOf"]}
    constants = {getattr(errors, name) for name in errors.__all__ if name.startswith("CLOSE_")}
    assert closes == constants == set(CLOSE_CODES)
    assert {item["const"] for item in schemas["YjsCloseCode"]["oneOf"]} == set(YJS_CLOSE_CODES)


def _subclasses(cls: type[Any]) -> set[type[Any]]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found | {cls}


def test_openapi_lists_every_http_route() -> None:
    app = create_app(Settings())
    served = set()
    for route in app.routes:
        if isinstance(route, Route) and not isinstance(route, Mount):
            for method in route.methods or ():
                if method != "HEAD":
                    served.add((method, path_template(route.path)))
    documented = {
        (method.upper(), path_template(path))
        for path, item in document("openapi.json")["paths"].items()
        for method in item
    }
    assert served == documented
    assert document("openapi.json")["openapi"].startswith("3.1")


def test_every_example_event_of_the_protocol_document_matches_the_schemas() -> None:
    spec = (DOCS / "websocket-api.md").read_text(encoding="utf-8")
    examples = json_examples(spec)
    assert len(examples) >= 45
    refused: dict[str, list[str]] = {}
    checked = 0
    for line, example in examples:
        if "type" in example:
            keys = message_keys(example["type"])
        elif "token" in example:
            keys = ["auth"]
        else:
            keys = ["auth_response"]
        assert keys, f"docs/websocket-api.md:{line}: no message {example.get('type')!r}"
        why = {key: message_errors(key, example) for key in keys}
        checked += 1
        if not any(not reasons for reasons in why.values()):
            refused.setdefault(example.get("type", keys[0]), []).append(f"line {line}: {why}")
    assert checked == len(examples)
    assert set(refused) == set(KNOWN_DIFFERENCES), refused
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.split(r"\n##+ ", readme.split(DIFFERENCES_HEADING, 1)[-1], maxsplit=1)[0]
    assert DIFFERENCES_HEADING in readme
    for message_type in KNOWN_DIFFERENCES:
        assert f"`{message_type}`" in section, message_type
