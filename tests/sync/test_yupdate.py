"""The Yjs v1 update reader (sync/yupdate.py), checked against updates pycrdt writes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text

from tripsage_sync.sync.ykeys import RootKeys, seen_values
from tripsage_sync.sync.yupdate import MalformedUpdate, decode_update


def trip_doc(client_id: int = 1) -> Doc[Any]:
    doc = Doc[Any](client_id=client_id)
    root = doc.get("trip", type=Map)
    root["notes"] = Text("héllo 😀")
    root["itinerary"] = Array([1, {"a": [1.5, None, True]}])
    root["budget"] = 5
    return doc


def test_structs_parents_keys_and_utf16_lengths() -> None:
    decoded = decode_update(trip_doc().get_update())
    by_key = {s.parent_sub: s for s in decoded.structs if s.parent == "trip"}
    assert set(by_key) == {"notes", "itinerary", "budget"}
    assert by_key["budget"].values == (5.0,)
    text = next(s for s in decoded.structs if s.parent == (1, by_key["notes"].clock))
    assert text.length == 8  # UTF-16 code units, as Yjs counts them
    items = next(s for s in decoded.structs if s.parent == (1, by_key["itinerary"].clock))
    assert items.values == (1.0, {"a": [1.5, None, True]})


def test_seen_values_tell_concurrent_writes() -> None:
    live = trip_doc()
    a, b = Doc[Any](client_id=2), Doc[Any](client_id=3)
    for peer in (a, b):
        peer.apply_update(live.get_update())
    keys = RootKeys("trip")
    keys.add(keys.keys_written(decode_update(live.get_update())))

    def write(peer: Doc[Any], value: int) -> bytes:
        before = peer.get_state()
        peer.get("trip", type=Map)["budget"] = value
        return peer.get_update(before)

    def seen(update: bytes) -> Any:
        written = keys.keys_written(decode_update(update))
        deleted = decode_update(live.get_update(live.get_state()))
        result = seen_values(written, keys, deleted)["budget"]
        live.apply_update(update)
        keys.add(written)
        return result

    first = seen(write(a, 7))
    assert (first.concurrent, first.written) == (False, 7.0)
    second = seen(write(b, 9))  # b had not seen 7
    assert second.concurrent
    a.apply_update(live.get_update())
    assert not seen(write(a, 11)).concurrent


def test_text_edits_write_no_map_key() -> None:
    live = trip_doc()
    peer = Doc[Any](client_id=4)
    peer.apply_update(live.get_update())
    before = peer.get_state()
    peer.get("trip", type=Map)["notes"].insert(0, "x")
    keys = RootKeys("trip")
    keys.add(keys.keys_written(decode_update(live.get_update())))
    assert keys.keys_written(decode_update(peer.get_update(before))) == {}


@given(st.binary(max_size=64))
def test_garbage_is_malformed_or_decodes(data: bytes) -> None:
    try:
        decode_update(data)
    except MalformedUpdate:
        pass


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x01\x01\x01\x00\x08", b"\x00\x00\x00"])
def test_truncated_or_trailing_bytes(data: bytes) -> None:
    with pytest.raises(MalformedUpdate):
        decode_update(data)
