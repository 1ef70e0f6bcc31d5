"""JSON text of plain data (sync/wire/jsontext.py): orjson, and json.dumps for what it refuses."""

from __future__ import annotations

import json

from tripsage_sync.sync.wire import json_text


def test_what_orjson_refuses_is_written_as_json_dumps_writes_it() -> None:
    assert json_text({"a": [1, 2.5, None, "é"]}) == '{"a":[1,2.5,null,"é"]}'
    for data in ({"big": 2**70}, {"s": "\ud800"}, {1: "int key"}):
        assert json_text(data) == json.dumps(data, separators=(",", ":"), ensure_ascii=False)
